package kproxy_test

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCMessageNotReceivedInTimeEndsTheCall: a Produce call whose
// client sent its headers and the start of a message announcing 1 MiB,
// then nothing more (a stalled or crashed sender). grpc-go keeps what came
// in its buffers, outside req_pool_size, and the call waits for the rest:
// it must be ended within the longer of read_timeout_ms (100 ms) and
// idle_timeout_ms (300 ms), Unavailable with the reason, nothing written.
// Before, the call waited for ever (until the connection went, two hours
// later with TCP keepalive alone): a client opening many such calls held
// up to max_request_size_bytes per call for as long.
func TestGRPCMessageNotReceivedInTimeEndsTheCall(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ReadTimeoutMs, cfg.IdleTimeoutMs = 100, 300 })
	addr := g.srv.GRPCAddr().String()
	h := dialH2(t, addr)
	h.open(addr, "/kafkahttpwrapper.v1.KProxy/Produce")
	start := time.Now()
	msg := make([]byte, 5+1024)
	binary.BigEndian.PutUint32(msg[1:5], 1<<20) // a message of 1 MiB, 1 KiB of it sent
	h.write(func() error { return h.fr.WriteData(1, false, msg) })
	select {
	case <-h.ended:
	case <-time.After(5 * time.Second):
		t.Fatalf("a call whose message stalled was still open 5 s after it began (idle_timeout_ms 300): %s", h.broken())
	}
	took := time.Since(start)
	h.mu.Lock()
	st, reason := h.trailers["grpc-status"], h.trailers["grpc-message"]
	h.mu.Unlock()
	if st != "14" || !strings.Contains(reason, "idle_timeout_ms") {
		t.Errorf("the call whose message stalled: grpc-status %q %q, want 14 (Unavailable: nothing written) naming read_timeout_ms and idle_timeout_ms", st, reason)
	}
	if took < 250*time.Millisecond {
		t.Errorf("the call was ended %v after it began, before idle_timeout_ms (300)", took)
	}
}
