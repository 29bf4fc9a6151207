package kproxy_test

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestTransientUnknownTopicIDLosesNothing: a broker answers
// UNKNOWN_TOPIC_ID (retriable: its metadata lags) long enough for kgo to
// give an acks=-1 record up, for a topic that exists under the same id.
// The record is answered 503 (not written). Every record of the key
// answered 200 afterwards must be in Kafka. Purging the topic from the
// idempotent client restarts the partition's sequence numbers at 0 under
// the same producer id and epoch: the broker takes the next record for a
// retry of the partition's first batch, answers success with that batch's
// offset and drops it.
func TestTransientUnknownTopicIDLosesNothing(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 3000 })
	first := decode(t, p.post(t, "topic="+topic+"&key=k&acks=-1", unique(t, "first")))
	refuseUnknownTopicIDThenLoseNothing(t, c, p, first)
}

// TestTransientUnknownTopicIDLosesNothingBatch is
// TestTransientUnknownTopicIDLosesNothing through /batch: its acks=-1
// records go through the same idempotent client, and the id the brokers
// gave right after its first record was written must be noted from their
// promises too, or the refusal purges the topic from that client.
func TestTransientUnknownTopicIDLosesNothingBatch(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 3000 })
	send := func(v []byte) (int, *int64) {
		a := p.postBatch(t, "topic="+topic+"&acks=-1", "", mpBatch(t, []brec{{key: "k", value: v}}))
		if a.code != 200 {
			return a.code, nil // one record: the batch's status is its
		}
		if len(a.Results) != 1 || a.Results[0].Offset == nil {
			t.Fatalf("/batch of one record answered 200 without its offset: %v", a)
		}
		return 200, a.Results[0].Offset
	}
	code, offset := send(unique(t, "first"))
	if code != 200 {
		t.Fatalf("first record: %d", code)
	}
	refuseUnknownTopicIDThenLoseNothingVia(t, c, send, *offset)
}

// refuseUnknownTopicIDThenLoseNothing is
// refuseUnknownTopicIDThenLoseNothingVia through /commit.
func refuseUnknownTopicIDThenLoseNothing(t *testing.T, c *kfake.Cluster, p *proxy, first result) {
	t.Helper()
	send := func(v []byte) (int, *int64) {
		a := p.post(t, "topic="+topic+"&key=k&acks=-1", v)
		if a.code != 200 {
			return a.code, nil
		}
		return a.code, decode(t, a).Offset
	}
	refuseUnknownTopicIDThenLoseNothingVia(t, c, send, *first.Offset)
}

// refuseUnknownTopicIDThenLoseNothingVia has the brokers answer
// UNKNOWN_TOPIC_ID to produce requests until kgo gives an acks=-1 record of
// key k, sent with send, up (503), then sends 10 more records of the key
// and checks that each answered 200 has an offset no other record was
// answered (first, answered before, included) and is in Kafka once.
func refuseUnknownTopicIDThenLoseNothingVia(t *testing.T, c *kfake.Cluster, send func(v []byte) (int, *int64), first int64) {
	t.Helper()
	f := kafkatest.NewFaults(t, c)
	f.ErrorProduce(5, 100) // UNKNOWN_TOPIC_ID: kgo gives up after its 4 retries
	if code, _ := send(unique(t, "refused")); code != 503 {
		t.Fatalf("record refused with UNKNOWN_TOPIC_ID 5 times: %d, want 503", code)
	}
	if n := f.Injected(); n != 5 {
		t.Fatalf("%d refusals injected, want 5", n)
	}
	var acked []string
	offsets := map[int64]string{first: "first"}
	for i := range 10 {
		v := unique(t, fmt.Sprintf("after-%d", i))
		code, offset := send(v)
		if code != 200 {
			continue // a purge fails records buffered meanwhile
		}
		acked = append(acked, string(v))
		if prev, ok := offsets[*offset]; ok {
			t.Errorf("%q and %q both answered offset %d", prev, v, *offset)
		}
		offsets[*offset] = string(v)
	}
	if len(acked) == 0 {
		t.Fatal("no record answered 200 after the refusals")
	}
	kafka := inKafka(t, c)
	for _, v := range acked {
		if kafka[v] != 1 {
			t.Errorf("%q answered 200, in Kafka %d times", v, kafka[v])
		}
	}
}
