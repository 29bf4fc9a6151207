package ktransfer_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestReplaySinceBeforeTheEpoch: a -since before 1970 is before every
// dead letter, so all of them are replayed. Sent to Kafka as a negative
// millisecond timestamp, 1969-12-31T23:59:59.999Z (-1) asked for the end
// of the topic (ListOffsets' "latest"): the replay pushed nothing and
// reported success.
func TestReplaySinceBeforeTheEpoch(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dlq"
	var recs []*kgo.Record
	for i := range 5 {
		recs = append(recs, &kgo.Record{Topic: "dlq", Key: []byte("k"), Value: []byte("v" + strconv.Itoa(i)), Headers: []kgo.RecordHeader{
			{Key: "ktransfer-module", Value: []byte("m")}, {Key: "ktransfer-topic", Value: []byte("t")},
			{Key: "ktransfer-partition", Value: []byte("0")}, {Key: "ktransfer-offset", Value: []byte(strconv.Itoa(i))}}})
	}
	e.produceRecords(t, recs...)
	cfg := e.config(t, 0, m)
	for _, since := range []time.Time{time.UnixMilli(-1).UTC(), time.UnixMilli(-3).UTC(), time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)} {
		before := len(b.got())
		rep, err := ktransfer.Replay(context.Background(), cfg, "m", since, testLog(t))
		if err != nil {
			t.Fatalf("-since %v: %v", since.Format(time.RFC3339Nano), err)
		}
		if rep.Replayed != 5 || len(b.got())-before != 5 {
			t.Errorf("-since %v: %v, %d pushes; want the 5 dead letters, all written after it", since.Format(time.RFC3339Nano), rep, len(b.got())-before)
		}
	}
}
