package kproxy_test

import (
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestAcks0GivenUpInFlightNotCountedLost: an acks=0 record whose produce
// request reached the leader, which is slower than produce_timeout_ms, is
// given up by the Kafka client at its deadline while the broker still
// appends it. kproxy_acks0_lost_records_total must not count it ("not
// delivered": it is in Kafka); like a 504 at acks 1 and -1, it is counted
// as one that may have been written.
func TestAcks0GivenUpInFlightNotCountedLost(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 400 })
	decode(t, p.post(t, "topic="+topic+"&key=k&acks=1", unique(t, "warm-up")))

	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)
	body := unique(t, "held")
	if a := p.post(t, "topic="+topic+"&key=k&acks=0", body); a.code != 200 {
		t.Fatalf("acks=0: got %d %q, want 200", a.code, a.body)
	}
	waitFor(t, "the record's request at the broker", func() bool { return held.Load() > 0 })
	waitFor(t, "the held acks=0 record given up at its deadline", func() bool { return acks0GivenUp(t, p) == 1 })
	close(release)
	waitFor(t, "the held record in Kafka", func() bool { return inKafka(t, c)[string(body)] == 1 })
	if lost := p.metric(t, "kproxy_acks0_lost_records_total"); lost != "0" {
		t.Errorf("kproxy_acks0_lost_records_total = %s for a record that is in Kafka, want 0", lost)
	}
	if mw := p.metric(t, "kproxy_acks0_maybe_written_records_total"); mw != "1" {
		t.Errorf("kproxy_acks0_maybe_written_records_total = %s, want 1", mw)
	}
}

// acks0GivenUp is the count of acks=0 records kproxy gave up: surely not
// written (lost) or perhaps written.
func acks0GivenUp(t testing.TB, p *proxy) int {
	t.Helper()
	n := 0
	for _, m := range []string{"kproxy_acks0_lost_records_total", "kproxy_acks0_maybe_written_records_total"} {
		v, _ := strconv.Atoi(p.metric(t, m))
		n += v
	}
	return n
}
