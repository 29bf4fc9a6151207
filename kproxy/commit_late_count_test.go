package kproxy_test

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestCommit504WrittenLaterCounted: README's kproxy_records_total is
// "records Kafka accepted". A /commit record answered 504 (no answer
// from Kafka within produce_timeout_ms) that the broker then writes is a
// record Kafka accepted, and counted so, as a /batch or gRPC one is.
func TestCommit504WrittenLaterCounted(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 300 })
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)
	if a := p.post(t, "topic="+topic, []byte{0x01}); a.code != 504 {
		t.Fatalf("got %d %q, want 504", a.code, a.body)
	}
	close(release)
	waitFor(t, "the record in Kafka", func() bool { return endOffsets(t, c, topic) == 1 })
	want := `kproxy_records_total{acks="1"} 1`
	waitFor(t, "the record written after its 504 counted in "+want, func() bool {
		return strings.Contains(p.metrics(t), want)
	})
}
