package kproxy_test

import (
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The tests in this file attack the metrics' promise (README, Metrics):
// each counts what its HELP and the README say it counts.

// TestBatchUnknownTopicCountedAsProduceError: a record refused because
// Kafka does not know its topic (auto_create_topics false) is counted in
// kproxy_produce_errors_total{code="404"}, whether it came alone to
// /commit or in a /batch, which refuses the whole batch: each of its
// records is one Kafka did not take.
func TestBatchUnknownTopicCountedAsProduceError(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.AutoCreateTopics = false })
	const metric = `kproxy_produce_errors_total{code="404"}`

	if a := p.post(t, "topic=no_such_topic", []byte{0x01}); a.code != 404 {
		t.Fatalf("/commit to an unknown topic: %d %q, want 404", a.code, a.body)
	}
	if n := p.metric(t, metric); n != "1" {
		t.Fatalf("after a /commit answered 404: %s %s, want 1", metric, n)
	}

	v := mp(t, "v")
	recs := []brec{{key: "a", value: v}, {topic: "no_such_topic", key: "b", value: v}, {key: "c", value: v}}
	if a := p.postBatch(t, "topic="+topic, "", mpBatch(t, recs)); a.code != 404 || a.index() != 1 {
		t.Fatalf("/batch naming an unknown topic: %v, want 404 at index 1", a)
	}
	if n := p.metric(t, metric); n != "4" {
		t.Errorf("after a /batch of 3 records refused 404: %s %s, want 4 (1 + the batch's 3 records, none written)", metric, n)
	}
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records of the refused batch written", n)
	}
}
