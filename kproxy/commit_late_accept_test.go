package kproxy_test

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestCommitAcksAllAcceptedAfter504Counted: README's
// kproxy_records_total is "records Kafka accepted". The acks=-1 client is
// idempotent: a produce request it has sent is not cancelled when its
// records' deadline passes (only the acks=1 client's is), so a broker
// slower than produce_timeout_ms still accepts the record, and the Kafka
// client says so, after kproxy answered 504 "may have been written". That
// acceptance is known to kproxy and is counted, as a /batch record's is.
func TestCommitAcksAllAcceptedAfter504Counted(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 300 })
	// The acks=-1 client's producer ID and connection first: the record
	// under test then leaves at once. As the client's first record it
	// would wait for them within its 300 ms, and on a loaded machine could
	// reach its deadline before its request was sent.
	decode(t, p.post(t, "topic="+topic+"&acks=-1", []byte{0x00}))
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)
	if a := p.post(t, "topic="+topic+"&acks=-1", []byte{0x01}); a.code != 504 {
		t.Fatalf("got %d %q, want 504", a.code, a.body)
	}
	if held.Load() == 0 {
		t.Fatal("no produce request reached the broker: the record was not in flight")
	}
	close(release)
	waitFor(t, "the record in Kafka", func() bool { return endOffsets(t, c, topic) == 2 })
	want := `kproxy_records_total{acks="-1"} 2` // the warm-up's and the record accepted after its 504
	waitFor(t, "the record accepted after its 504 counted in "+want, func() bool {
		return strings.Contains(p.metrics(t), want)
	})
}
