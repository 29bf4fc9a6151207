package kproxy_test

import (
	"context"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCMaxConcurrentStreams: one connection has at most
// grpc_max_concurrent_streams calls open at once. With two streams open
// (the bound), grpc-go's client holds a third call — stream or unary —
// until its deadline, and opens it once one of the two ended.
func TestGRPCMaxConcurrentStreams(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.GRPCMaxConcurrentStreams = 2 })
	req := func(id uint64) *kproxypb.ProduceRequest {
		return &kproxypb.ProduceRequest{Id: id, Topic: topic, Records: []*kproxypb.Record{grec("", "k", "v")}}
	}
	roundTrip := func(s interface {
		Send(*kproxypb.ProduceRequest) error
		Recv() (*kproxypb.ProduceResponse, error)
	}, id uint64) error {
		if err := s.Send(req(id)); err != nil {
			return err
		}
		resp, err := s.Recv()
		if err == nil && resp.Status != 200 {
			t.Errorf("stream request %d: status %d %q", id, resp.Status, resp.Error)
		}
		return err
	}
	first, second := g.stream(t, nil), g.stream(t, nil)
	for i, s := range []interface {
		Send(*kproxypb.ProduceRequest) error
		Recv() (*kproxypb.ProduceResponse, error)
	}{first, second} {
		if err := roundTrip(s, uint64(i)); err != nil { // open at the server
			t.Fatalf("stream %d: %v", i, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	third, err := g.kp.ProduceStream(ctx)
	if err == nil {
		if err := roundTrip(third, 2); err == nil {
			t.Fatal("a third stream was served beside two open ones: grpc_max_concurrent_streams 2 not applied")
		}
		t.Fatalf("a third stream opened beside two open ones (grpc_max_concurrent_streams 2), then failed: %v", err)
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("third stream: %v, want DeadlineExceeded (held by the client until a stream ends)", err)
	}
	if _, err := g.kp.Produce(ctx, req(3)); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("unary call beside two open streams: %v, want DeadlineExceeded", err)
	}

	if err := first.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Recv(); err != io.EOF {
		t.Fatalf("first stream after CloseSend: %v, want its end (EOF)", err)
	}
	third = g.stream(t, nil)
	if err := roundTrip(third, 4); err != nil {
		t.Errorf("a stream once one of two ended: %v", err)
	}
}

func TestGRPCMaxConcurrentStreamsConfig(t *testing.T) {
	if got := kproxy.DefaultConfig().GRPCMaxConcurrentStreams; got != 100 {
		t.Errorf("default grpc_max_concurrent_streams %d, want 100", got)
	}
	for _, tc := range []struct {
		v    int
		want string
	}{
		{0, "kproxy.yaml: grpc_max_concurrent_streams: must be >= 1, got 0"},
		{-3, "kproxy.yaml: grpc_max_concurrent_streams: must be >= 1, got -3"},
		{10_001, "kproxy.yaml: grpc_max_concurrent_streams: must be <= 10000, got 10001"},
	} {
		cfg := kproxy.DefaultConfig()
		cfg.BrokerHosts = []string{"127.0.0.1:9092"}
		cfg.GRPCMaxConcurrentStreams = tc.v
		if err := cfg.Validate("kproxy.yaml"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("grpc_max_concurrent_streams %d: %v, want %q", tc.v, err, tc.want)
		}
	}
	cfg := kproxy.DefaultConfig()
	cfg.BrokerHosts = []string{"127.0.0.1:9092"}
	cfg.GRPCMaxConcurrentStreams = 10_000
	if err := cfg.Validate("kproxy.yaml"); err != nil {
		t.Errorf("grpc_max_concurrent_streams 10000: %v", err)
	}
}

// TestGRPCCancelledAtomicCallFreesItsStream: an atomic Produce waiting for
// a transactional client (all busy) stops when its client cancels it.
// grpc-go's client counts a cancelled call as ended (RST_STREAM) and opens
// the next one, but the server frees the call's place among the
// grpc_max_concurrent_streams only when its handler returns, and until then
// blocks the connection's reader at the bound: every call of the connection
// would wait for produce_timeout_ms (10 s here).
func TestGRPCCancelledAtomicCallFreesItsStream(t *testing.T) {
	for _, bound := range []int{1, 2, 100} {
		t.Run("bound"+strconv.Itoa(bound), func(t *testing.T) {
			c, g := txnGRPC(t, bound, 10000)
			// The only transactional client is busy: the records of its
			// batch (sent over HTTP) are held by the broker.
			release := make(chan struct{})
			var heldReqs atomic.Int32
			stopHold := onBroker(c, 0, func(*kmsg.ProduceRequest) (kmsg.Response, error, bool) {
				heldReqs.Add(1)
				c.SleepControl(func() { <-release })
				return nil, nil, false
			})
			held := make(chan struct{})
			go func() {
				defer close(held)
				g.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{value: mp(t, 0)}}))
			}()
			waitFor(t, "the batch's produce request held", func() bool { return heldReqs.Load() > 0 })
			defer func() { close(release); stopHold(); <-held }()

			actx, cancelA := context.WithCancel(context.Background())
			acks := int32(-1)
			aDone := make(chan error, 1)
			go func() {
				_, err := g.kp.Produce(actx, &kproxypb.ProduceRequest{Acks: &acks, Atomic: true, Topic: topic,
					Records: []*kproxypb.Record{grec("", "k", "v")}})
				aDone <- err
			}()
			// It is admitted (in flight beside the held batch's record), then
			// waits for the transactional client: no I/O in between.
			waitFor(t, "the atomic call in flight", func() bool { return g.srv.InFlight() == 2 })
			time.Sleep(200 * time.Millisecond)
			cancelA()
			if err := <-aDone; status.Code(err) != codes.Canceled {
				t.Fatalf("the cancelled call: %v, want Canceled", err)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if bound == 2 {
				// A stream and a unary call, the bound: the stream's
				// request is answered at once.
				st := g.stream(t, ctx)
				go grpc_health_v1.NewHealthClient(g.conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
				time.Sleep(200 * time.Millisecond)
				start := time.Now()
				if err := st.Send(&kproxypb.ProduceRequest{Id: 1, Topic: topic, Acks: new(int32)}); err != nil {
					t.Fatal(err)
				}
				_, err := st.Recv()
				t.Logf("a request on the open stream answered (%v) after %v", err, time.Since(start))
				// Stalled, it would wait for the cancelled call's
				// produce_timeout_ms (10 s): 3 s leaves room for a loaded
				// machine.
				if time.Since(start) > 3*time.Second {
					t.Errorf("the open stream stalled %v behind the handler of a cancelled call", time.Since(start))
				}
				return
			}
			start := time.Now()
			cctx, ccancel := context.WithTimeout(ctx, 4*time.Second)
			defer ccancel()
			_, err := grpc_health_v1.NewHealthClient(g.conn).Check(cctx, &grpc_health_v1.HealthCheckRequest{})
			t.Logf("health Check after a cancelled call: %v in %v", err, time.Since(start))
			if err != nil {
				t.Errorf("a call after a cancelled one on the same connection: %v", err)
			}
		})
	}
}
