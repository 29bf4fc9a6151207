package ktransfer_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestReplayKeepsRecordHeadersNamedLikeOrigin: a record's own headers
// whose names begin with ktransfer- (kproxy writes any X-Kafka-Header-*
// a client sends) are the record's, not the dead letter's origin: the
// replay pushes the record whose own header is ktransfer-value-omitted
// (before, skipped as a dead letter without its value) and sends the
// record whose target header is named ktransfer-target to its target
// (before, the header was dropped and the record went to the uri).
func TestReplayKeepsRecordHeadersNamedLikeOrigin(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	var accepting atomic.Bool
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) {
		if !accepting.Load() {
			w.WriteHeader(400)
		}
	})
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dlq"
	m.Protocol.TargetHeader = "ktransfer-target"
	e.produceRecords(t,
		&kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("targeted"), Headers: []kgo.RecordHeader{{Key: "ktransfer-target", Value: []byte(b.URL + "/hook?x=1")}}},
		&kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("marked"), Headers: []kgo.RecordHeader{{Key: "ktransfer-value-omitted", Value: []byte("client's own")}}},
	)
	r := e.start(t, m)
	waitFor(t, "2 dead letters", 15*time.Second, func() bool { return kafkatest.Records(t, e.kafka, e.kc, "dlq") == 2 })
	waitFor(t, "offsets past both records", 10*time.Second, func() bool { return offsetsSum(t, e, "m", "t", 1) == 2 })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	refusals := len(b.got())
	accepting.Store(true)

	rep, err := ktransfer.Replay(context.Background(), e.config(t, 0, m), "m", time.Time{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 2 || rep.Skipped != 0 || rep.WithoutValue != 0 {
		t.Errorf("replay: %v; want both records replayed", rep)
	}
	for _, p := range b.got()[refusals:] {
		switch p.body {
		case "targeted":
			if p.path != "/hook" || p.query != "x=1" {
				t.Errorf("the targeted record was replayed to %s?%s, want its target /hook?x=1", p.path, p.query)
			}
		case "marked":
		default:
			t.Errorf("unexpected push %+v", p)
		}
	}
}
