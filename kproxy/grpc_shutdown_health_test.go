package kproxy_test

import (
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCShutdownNotHeldByHealthCallWithoutMessage: a health call
// (Check, List, or a Watch, which reads one request before it answers
// anything) whose client sent its headers and never its message took
// nothing: at shutdown it must not hold kproxy for shutdown_timeout_ms
// (after which the Kafka clients are closed without their flush, as if
// requests were stuck). It is ended at once, Unavailable. The shutdown
// still takes about a second here: grpc-go leaves a connection whose
// client does not close it after the last GOAWAY open for 1 s (so that
// unread data does not turn its close into a reset), and this raw client
// does not close it; the bound leaves a loaded machine room for that
// second, well below shutdown_timeout_ms.
func TestGRPCShutdownNotHeldByHealthCallWithoutMessage(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	for _, method := range []string{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/List", "/grpc.health.v1.Health/Watch"} {
		t.Run(method, func(t *testing.T) {
			g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ShutdownTimeoutMs = 10000 })
			addr := g.srv.GRPCAddr().String()
			h := dialH2(t, addr)
			h.open(addr, method)
			if !h.ping(1) { // after the HEADERS: the call is open on the server
				t.Fatalf("ping: %s", h.broken())
			}
			start := time.Now()
			if err := g.stop(); err != nil {
				t.Errorf("Run: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("shutdown took %v (shutdown_timeout_ms 10000) with a %s call open that never sent its message", d, method)
			}
			select {
			case <-h.ended:
				h.mu.Lock()
				st := h.trailers["grpc-status"]
				h.mu.Unlock()
				if st != "14" {
					t.Errorf("the call without its message at shutdown: grpc-status %q, want 14 (Unavailable)", st)
				}
			case <-time.After(time.Second):
				t.Errorf("the call without its message was not ended at shutdown: %s", h.broken())
			}
		})
	}
}
