package kproxy_test

import (
	"strconv"
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

// TestAcks0WrittenNotCountedLost: kproxy_acks0_lost_records_total counts
// acks=0 records "answered 200 and not delivered". A record whose every
// produce request the broker appended, the answer then lost (the
// connection closed), is in Kafka when kgo gives it up at
// produce_timeout_ms: it may not be counted lost. Whatever kproxy gives
// up is counted once, lost or not confirmed.
func TestAcks0WrittenNotCountedLost(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 1000 })
	kafkatest.NewFaults(t, c).AppendThen(1<<20, 0) // appended, then the connection closed
	const n = 3
	var bodies []string
	for i := range n {
		body := unique(t, "acks0-"+strconv.Itoa(i))
		bodies = append(bodies, string(body))
		if a := p.post(t, "topic="+topic+"&acks=0&key=k"+strconv.Itoa(i), body); a.code != 200 {
			t.Fatalf("acks=0: %d %q", a.code, a.body)
		}
	}
	count := func(name string) int {
		v, _ := strconv.Atoi(p.metric(t, name)) // absent: 0
		return v
	}
	lost := func() int { return count("kproxy_acks0_lost_records_total") }
	unconfirmed := func() int { return count("kproxy_acks0_unconfirmed_records_total") }
	waitFor(t, "the acks=0 records given up", func() bool { return lost()+unconfirmed() >= n })
	kafka := inKafka(t, c)
	written := 0
	for _, b := range bodies {
		if kafka[b] > 0 {
			written++
		}
	}
	if written == 0 {
		t.Fatalf("no record in Kafka: the fault did not append them")
	}
	if l := lost(); l > n-written {
		t.Errorf("kproxy_acks0_lost_records_total %d, but %d of the %d records given up are in Kafka: written records counted lost", l, written, n)
	}
	if l, u := lost(), unconfirmed(); l+u != n {
		t.Errorf("lost %d + unconfirmed %d, want the %d records given up, each counted once", l, u, n)
	}
}
