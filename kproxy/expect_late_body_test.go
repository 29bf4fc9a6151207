package kproxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// With "Expect: 100-continue" a /commit's record deadline runs from its
// headers' arrival (README). A client that sends its body after
// produce_timeout_ms (within read_timeout_ms) had its record handed to
// Kafka's client with its deadline gone: Kafka's client fails it at once,
// with every record queued behind it in its partition (other clients'
// with time left); at acks=0 it was answered 200 and lost, Kafka healthy.
// Such a record is refused 503 "not written", never handed over.
func TestExpectBodyAfterDeadlineNotHandedOver(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	const produceTimeout = 300 * time.Millisecond
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.ProduceTimeoutMs = int(produceTimeout / time.Millisecond)
		cfg.ReadTimeoutMs, cfg.AutoCreateTopics = 5000, false // the topic looked up on the headers
	})
	for _, acks := range []string{"0", "1", "-1"} {
		// The body comes late, well within read_timeout_ms.
		code, got, _ := commitBodyLate(t, p, "topic=orders&key=k&acks="+acks, []byte{0xa1, 'v'} /* msgpack "v" */, time.Now(), 2*produceTimeout)
		t.Logf("acks=%s: %d %s", acks, code, got)
		if code != 503 || !strings.Contains(got, "nothing was handed to kafka") {
			t.Errorf("acks=%s, body %v after the headers (produce_timeout_ms %v): %d %q; want 503, not handed to kafka, not written",
				acks, 2*produceTimeout, produceTimeout, code, got)
		}
	}
	if n := endOffsets(t, c, "orders"); n != 0 {
		t.Errorf("%d records in Kafka, want none", n)
	}
	if lost := p.metric(t, "kproxy_acks0_lost_records_total"); lost != "0" {
		t.Errorf("kproxy_acks0_lost_records_total %s with Kafka healthy; want 0", lost)
	}
}
