package kproxy_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCStreamCancelledWritesNothingMore: a stream's request still
// waiting for req_pool_size room when its client cancels the stream was
// not handed to Kafka: it is never written afterwards ("a call whose
// client went away before its records were handed to Kafka writes
// nothing"), and its records go back to the client's rate limit.
func TestGRPCStreamCancelledWritesNothingMore(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.ReqPoolSize = 20
		cfg.Clients = []kproxy.Client{
			{Name: "shop", Secret: "pass", Topics: []string{topic}, RateLimit: 0.001, Burst: 30},
			{Name: "probe", Secret: "pass", Topics: []string{topic}},
		}
	})
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)
	ctx, cancel := context.WithCancel(as(context.Background(), "shop", "pass"))
	defer cancel()
	s := g.stream(t, ctx)
	reqs := keyedRequests(3, 10, 3, func(int) int32 { return 1 })
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	// Two requests in flight (req_pool_size), the third read and
	// waiting for room (its size observed when it was taken up).
	waitFor(t, "two requests in flight, the third waiting for room", func() bool {
		return g.srv.InFlight() == 20 && strings.Contains(g.metrics(t), "kproxy_batch_records_count 3")
	})
	cancel()
	if _, err := s.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled stream: %v", err)
	}
	waitFor(t, "the cancelled stream's handler to end", func() bool {
		return strings.Contains(g.metrics(t), `kproxy_grpc_rpcs_total{code="Canceled",method="kafkahttpwrapper.v1.KProxy/ProduceStream"} 1`)
	})
	close(release)
	// The two requests handed to Kafka keep their places until Kafka
	// answered them.
	waitFor(t, "the places given back once Kafka answered", func() bool { return g.srv.InFlight() == 0 })
	// One record after them through the same Kafka client and partition:
	// once it is answered, every record handed to Kafka before it is
	// written.
	resp, err := g.produce(t, as(context.Background(), "probe", "pass"),
		&kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k0", "after")}})
	if err != nil || resp.Status != 200 {
		t.Fatalf("a record after the cancelled stream: %v %v", resp, refusalOf(err))
	}
	if n := endOffsets(t, c, topic); n != 21 {
		t.Errorf("%d records in Kafka, want 21: the two requests handed to Kafka before the cancel and the one after; "+
			"the request still waiting for room when the client left was written", n)
	}
	// The burst of 30 has room for one more record only if the third
	// request's 10 were given back.
	resp, err = g.produce(t, as(context.Background(), "shop", "pass"),
		&kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k0", "again")}})
	if err != nil || resp.Status != 200 {
		t.Errorf("shop's next record: %v %v; want 200, the unwritten request's records given back", resp, refusalOf(err))
	}
}

// TestGRPCStreamClientSwitchRefusalRetryAfter: README's ProduceResponse
// table gives retry_after for every 503; a stream's request at another
// acks level, refused 503 because an earlier request's record was still
// in Kafka's client at its deadline, carries it too (1 s, as every other
// 503 and HTTP's Retry-After).
func TestGRPCStreamClientSwitchRefusalRetryAfter(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 1000 })
	kafkatest.NewFaults(t, c).Sleep(int16(kmsg.Produce), 1, 5*time.Second)
	s := g.stream(t, nil)
	resps, _ := switchClients(t, s)
	s.CloseSend()
	if r := resps[1]; r.Status != 503 || r.RetryAfter != 1 {
		t.Errorf("second (waiting for the frozen request): status %d retry_after %d %q, want 503 with retry_after 1",
			r.Status, r.RetryAfter, r.Error)
	}
}

// TestGRPCTooLargeCallCounted: kproxy_grpc_rpcs_total counts every gRPC
// call ended, by method and code; a Produce whose message is over
// max_request_size_bytes, refused by gRPC as it is read (ResourceExhausted),
// ends a call as well.
func TestGRPCTooLargeCallCounted(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.MaxRequestSizeBytes = 64 << 10 })
	big := &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", strings.Repeat("x", 70_000))}}
	if _, err := g.produce(t, nil, big); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 70 kB message, max_request_size_bytes 64 KiB: %v, want ResourceExhausted", err)
	}
	// grpc-go writes the status as the read fails, before kproxy's handler
	// counts the call: the client may see it first.
	want := `kproxy_grpc_rpcs_total{code="ResourceExhausted",method="kafkahttpwrapper.v1.KProxy/Produce"} 1`
	waitFor(t, want+" in /metrics", func() bool { return strings.Contains(g.metrics(t), want) })
}

// TestGRPCStreamNotReadFreesReqPool: a stream whose client stops reading
// its answers (a stuck consumer of them) holds its stream, not
// req_pool_size: once Kafka has answered its records, their place in
// req_pool_size is free, as a /batch's is once answered, whatever the
// client does with the answer. Otherwise two such streams hold every
// place and every client, HTTP ones included, is refused 503 for as long
// as they stay open.
func TestGRPCStreamNotReadFreesReqPool(t *testing.T) {
	const per = 250
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ReqPoolSize = 8 * per })
	// Fixed 64 KiB windows (no BDP growth): the answers not read stop
	// kproxy's writes after a few dozen.
	conn, err := grpc.NewClient(g.srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := kproxypb.NewKProxyClient(conn).ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() { // never reads an answer; blocked by flow control in the end
		for q := range 200 {
			req := &kproxypb.ProduceRequest{Id: uint64(q), Topic: topic}
			for i := range per {
				req.Records = append(req.Records, grec("", "", strconv.Itoa(i)))
			}
			if s.Send(req) != nil {
				return
			}
		}
	}()
	// Stuck: nothing more reaches Kafka for half a second.
	last, since, deadline := int64(-1), time.Now(), time.Now().Add(20*time.Second)
	for {
		if n := endOffsets(t, c, topic); n != last {
			last, since = n, time.Now()
		} else if n > 0 && time.Since(since) > 500*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream's records kept reaching Kafka for 20 s (%d)", last)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("stream stuck with %d records in Kafka, %d in flight", last, g.srv.InFlight())
	if last < 10*per {
		t.Fatalf("only %d records in Kafka: the stream did not run", last)
	}
	req := &kproxypb.ProduceRequest{Topic: topic}
	for i := range 8 * per {
		req.Records = append(req.Records, grec("", "", "other"+strconv.Itoa(i)))
	}
	resp, err := g.produce(t, nil, req)
	if err != nil || resp.Status != 200 {
		t.Errorf("another client's batch of req_pool_size records beside the stuck stream: %v %v; want 200 "+
			"(%d records in flight, though Kafka has answered every record handed to it)", resp, refusalOf(err), g.srv.InFlight())
	}
}

// TestGRPCCancelledCallKeepsReqPoolUntilSettled attacks README's promise
// that a request's records leave req_pool_size "once Kafka answered them
// (or their deadline passed)": a call without a deadline, cancelled by its
// client once its records were handed to Kafka, ended at once and gave its
// places back while Kafka's client still held its records (written up to
// produce_timeout_ms later). Cancelled again and again, calls so put many
// times req_pool_size records in Kafka's client. The places must stay
// taken until Kafka answered the records: another call is refused 503
// meanwhile, and is served once they are answered.
func TestGRPCCancelledCallKeepsReqPoolUntilSettled(t *testing.T) {
	const pool = 4
	for _, method := range []string{"Produce", "ProduceStream"} {
		t.Run(method, func(t *testing.T) {
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ReqPoolSize = pool })
			release := make(chan struct{})
			defer func() {
				select {
				case <-release:
				default:
					close(release)
				}
			}()
			var held atomic.Int32
			holdProduce(c, release, &held)
			req := &kproxypb.ProduceRequest{Topic: topic, Acks: acksOf(1)}
			for i := range pool {
				req.Records = append(req.Records, grec("", "k", strconv.Itoa(i)))
			}
			ctx, cancel := context.WithCancel(context.Background()) // no deadline
			defer cancel()
			if method == "Produce" {
				done := make(chan error, 1)
				go func() {
					_, err := g.kp.Produce(ctx, req)
					done <- err
				}()
				waitFor(t, "the call's records sent to Kafka", func() bool { return held.Load() > 0 })
				cancel()
				if err := <-done; status.Code(err) != codes.Canceled {
					t.Fatalf("cancelled call: %v", err)
				}
			} else {
				s, err := g.kp.ProduceStream(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Send(req); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the stream's records sent to Kafka", func() bool { return held.Load() > 0 })
				cancel()
				if _, err := s.Recv(); status.Code(err) != codes.Canceled {
					t.Fatalf("cancelled stream: %v", err)
				}
			}
			// Counted once its handler ended, whatever its code.
			ended := `,method="kafkahttpwrapper.v1.KProxy/` + method + `"} 1`
			waitFor(t, "the cancelled call's handler to end", func() bool { return strings.Contains(g.metrics(t), ended) })
			if n := g.srv.InFlight(); n != pool {
				t.Errorf("in flight after the cancelled call ended: %d, want %d (its records are still in Kafka's client)", n, pool)
			}
			one := &kproxypb.ProduceRequest{Topic: topic, Acks: acksOf(1), Records: []*kproxypb.Record{grec("", "k", "next")}}
			resp, err := g.produce(t, nil, one)
			if r := refusalOf(err); err == nil || r.code != codes.Unavailable {
				t.Errorf("a call while the cancelled call's %d records were in Kafka's client (req_pool_size %d): %v %v, want Unavailable (503)",
					pool, pool, resp, r)
			}
			close(release)
			waitFor(t, "the places given back once Kafka answered", func() bool { return g.srv.InFlight() == 0 })
			if resp, err := g.produce(t, nil, one); err != nil || resp.Status != 200 {
				t.Fatalf("a call once Kafka answered the cancelled call's records: %v %v, want 200", resp, refusalOf(err))
			}
		})
	}
}

// TestGRPCCallPastItsDeadlineKeepsReqPoolUntilSettled: as above for a call
// answered at its own deadline (DeadlineExceeded, 504) while Kafka's client
// still holds its records, which it keeps for produce_timeout_ms from their
// arrival, not for the call's shorter deadline
// (TestShortGRPCDeadlineDoesNotFailOtherClientsRecords): its places stay
// taken until Kafka answered the records.
func TestGRPCCallPastItsDeadlineKeepsReqPoolUntilSettled(t *testing.T) {
	const pool = 4
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ReqPoolSize = pool })
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	var held atomic.Int32
	holdProduce(c, release, &held)
	req := &kproxypb.ProduceRequest{Topic: topic, Acks: acksOf(1)}
	for i := range pool {
		req.Records = append(req.Records, grec("", "k", strconv.Itoa(i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := g.kp.Produce(ctx, req); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call held past its deadline: %v, want DeadlineExceeded", err)
	}
	if held.Load() == 0 {
		t.Fatal("the call's records never reached the broker")
	}
	waitFor(t, "the call's handler to end", func() bool {
		return strings.Contains(g.metrics(t), `,method="kafkahttpwrapper.v1.KProxy/Produce"} 1`)
	})
	if n := g.srv.InFlight(); n != pool {
		t.Errorf("in flight after the call was answered at its deadline: %d, want %d (its records are still in Kafka's client)", n, pool)
	}
	free()
	waitFor(t, "the places given back once Kafka answered", func() bool { return g.srv.InFlight() == 0 })
}
