package kproxy_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCShutdownNotHeldByStreamNotRead: a ProduceStream whose client
// sends requests and never reads their answers fills the stream's HTTP/2
// window; kproxy's send of the next answer then blocks, and grpc-go's
// sends have no write timeout. The stream's handler never returned, so
// the shutdown waited for it until shutdown_timeout_ms (and then closed
// the Kafka clients without a flush). Once every record the stream read is
// settled, the stream must be cut after a short bounded wait: the stop takes
// far less than shutdown_timeout_ms, and every answer the client did read
// is true (200: its records are in Kafka).
func TestGRPCShutdownNotHeldByStreamNotRead(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	const shutdownTimeout = 10 * time.Second
	// Fixed windows of 64 KiB on the client (no BDP estimation): what
	// kproxy may send the stream unread is bounded.
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.ShutdownTimeoutMs = int(shutdownTimeout / time.Millisecond)
	}, smallWindows()...)

	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	s, err := g.kp.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each answer carries 2000 results (about 20 KB): 10 answered are
	// more than the client's window and kproxy's write quota together.
	const perReq, reqs = 2000, 40
	go func() {
		for q := range reqs {
			if s.Send(bigRequest(q, perReq)) != nil {
				return
			}
		}
	}()
	waitFor(t, "10 requests of the stream written", func() bool { return endOffsets(t, c, topic) >= 10*perReq })

	start := time.Now()
	waitStopped(t, stopInBackground(g), shutdownTimeout+5*time.Second)
	if d := time.Since(start); d > shutdownTimeout/2 {
		t.Errorf("shutdown took %v (shutdown_timeout_ms %v) with a stream whose client reads no answers; want a short bounded wait",
			d.Round(time.Millisecond), shutdownTimeout)
	}

	// What the client reads now (its buffered answers) is true.
	resps, end := recvAll(s)
	written := endOffsets(t, c, topic)
	checkInOrder(t, resps)
	if int64(len(resps)*perReq) > written {
		t.Errorf("%d requests answered 200, %d records in Kafka", len(resps), written)
	}
	if end == nil {
		t.Errorf("the stream ended OK after %d answers at shutdown, want an error", len(resps))
	}
	t.Logf("stop took %v; %d answers read, %d records in Kafka, stream end %v", time.Since(start).Round(time.Millisecond), len(resps), written, end)
}

// smallWindows are the dial options of an insecure client with fixed
// windows of 64 KiB (no BDP estimation): what kproxy may send a stream
// unread is bounded. more are added after them.
func smallWindows(more ...grpc.DialOption) []grpc.DialOption {
	return append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64 << 10), grpc.WithInitialConnWindowSize(64 << 10)}, more...)
}

// bigRequest is request q of the stream: perReq records of topic, keys
// k0…k6 in turn, whose answer carries perReq results (about 10 bytes each).
func bigRequest(q, perReq int) *kproxypb.ProduceRequest {
	recs := make([]*kproxypb.Record, perReq)
	for i := range recs {
		recs[i] = grec("", "k"+strconv.Itoa(i%7), "v")
	}
	return &kproxypb.ProduceRequest{Id: uint64(q), Topic: topic, Records: recs}
}

// sendBig sends reqs requests of perReq records (bigRequest) on s.
func sendBig(t *testing.T, s grpc.BidiStreamingClient[kproxypb.ProduceRequest, kproxypb.ProduceResponse], reqs, perReq int) {
	t.Helper()
	for q := range reqs {
		if err := s.Send(bigRequest(q, perReq)); err != nil {
			t.Fatal(err)
		}
	}
}

// sendAllWritten opens a ProduceStream on g (for 40 s at most), sends it
// reqs requests of perReq records (bigRequest) and waits until all their
// records are in Kafka (c).
func sendAllWritten(t *testing.T, g *gproxy, c *kfake.Cluster, reqs, perReq int) grpc.BidiStreamingClient[kproxypb.ProduceRequest, kproxypb.ProduceResponse] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	t.Cleanup(cancel)
	s, err := g.kp.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sendBig(t, s, reqs, perReq)
	waitFor(t, "the stream's requests written", func() bool { return endOffsets(t, c, topic) >= int64(reqs*perReq) })
	return s
}

// stopInBackground stops g; the channel gets what Run returned.
func stopInBackground(g *gproxy) <-chan error {
	stopped := make(chan error, 1)
	go func() { stopped <- g.stop() }()
	return stopped
}

// waitStopped waits up to d for Run to return on stopped, and checks it
// returned no error.
func waitStopped(t *testing.T, stopped <-chan error, d time.Duration) {
	t.Helper()
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(d):
		t.Fatal("Run did not return")
	}
}

// checkInOrder checks resps are the answers to requests 0, 1, …, each 200.
func checkInOrder(t *testing.T, resps []*kproxypb.ProduceResponse) {
	t.Helper()
	for q, r := range resps {
		if r.Id != uint64(q) || r.Status != 200 {
			t.Errorf("answer %d: id %d status %d %q, want 200 in order", q, r.Id, r.Status, r.Error)
		}
	}
}
