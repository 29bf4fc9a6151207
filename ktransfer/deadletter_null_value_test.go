package ktransfer_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestDeadLetterOfANullValueIsNoTombstone: a record whose value is null (a
// deletion in a compacted topic) given up is written to the dead-letter
// topic with an empty value and ktransfer-value-null, as the push carried
// it (an empty body). Written null, it was a tombstone there: a compacted
// dead-letter topic dropped every dead letter of its key, and then the
// tombstone itself, where README promises each key's latest dead letter.
func TestDeadLetterOfANullValueIsNoTombstone(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dlq"
	e.start(t, m)
	cl := kafkatest.Client(t, e.kafka, e.kc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Key: []byte("k")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var dead []*kgo.Record
	waitFor(t, "the dead letter written", 20*time.Second, func() bool {
		dead = kafkatest.ReadAll(t, e.kafka, e.kc, "dlq")
		return len(dead) > 0
	})
	h := headersOf(dead[0])
	if dead[0].Value == nil || len(dead[0].Value) != 0 || h["ktransfer-value-null"] != "1" || h["ktransfer-offset"] != "0" {
		t.Errorf("dead letter of a null value: value %q (nil: %v), headers %v; want an empty value (no tombstone) and ktransfer-value-null 1",
			dead[0].Value, dead[0].Value == nil, h)
	}
}
