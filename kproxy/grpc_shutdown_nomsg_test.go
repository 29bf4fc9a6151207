package kproxy_test

import (
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCShutdownNotHeldByCallWithoutMessage: at shutdown kproxy lets
// the requests in flight finish, and an idle stream ends at once
// (Unavailable). A Produce call whose client sent its headers and never
// its message has no request in flight either: it must not hold the
// shutdown for the whole shutdown_timeout_ms (after which the Kafka
// clients are closed without their flush, as if requests were stuck).
// It is ended Unavailable (nothing read, nothing written), not Canceled,
// which a client takes for its own cancellation.
func TestGRPCShutdownNotHeldByCallWithoutMessage(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ShutdownTimeoutMs = 10000 })
	if resp, err := g.produce(t, nil, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "x")}}); err != nil || resp.Status != 200 {
		t.Fatalf("a call: %v %v", resp, refusalOf(err))
	}
	addr := g.srv.GRPCAddr().String()
	h := dialH2(t, addr)
	h.open(addr, "/kafkahttpwrapper.v1.KProxy/Produce")
	if !h.ping(1) { // after the HEADERS: the call is open on the server
		t.Fatalf("ping: %s", h.broken())
	}
	start := time.Now()
	if err := g.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second { // about 1 s: grpc-go keeps a connection its client does not close for 1 s after the last GOAWAY
		t.Errorf("shutdown took %v (shutdown_timeout_ms 10000) with a call open that never sent its message", d)
	}
	select {
	case <-h.ended:
		h.mu.Lock()
		st := h.trailers["grpc-status"]
		h.mu.Unlock()
		if st != "14" {
			t.Errorf("the call without its message at shutdown: grpc-status %q, want 14 (Unavailable: nothing read, nothing written)", st)
		}
	case <-time.After(time.Second):
		t.Errorf("the call without its message was not ended at shutdown: %s", h.broken())
	}
}
