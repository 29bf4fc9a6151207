package ktransfer_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestReplayOutOfRangeAnswerKeepsItsPlace: a broker answers the replay's
// first fetch of the dead-letter topic OFFSET_OUT_OF_RANGE for an offset
// Kafka has (a leader moving, a stale broker: the daemon reads on from
// its offset then). The replay reads on from where it was too: every dead
// letter written from -since on is pushed once, and none written before.
func TestReplayOutOfRangeAnswerKeepsItsPlace(t *testing.T) {
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dlq"
	deadLetter := func(i int, at time.Time) *kgo.Record {
		return &kgo.Record{Topic: "dlq", Key: []byte("k"), Value: []byte("v" + strconv.Itoa(i)), Timestamp: at, Headers: []kgo.RecordHeader{
			{Key: "ktransfer-module", Value: []byte("m")}, {Key: "ktransfer-topic", Value: []byte("t")},
			{Key: "ktransfer-partition", Value: []byte("0")}, {Key: "ktransfer-offset", Value: []byte(strconv.Itoa(i))}}}
	}
	since := time.Now().Add(-time.Minute)
	for i := range 10 { // one batch each: the timestamps decide
		at := time.Now()
		if i < 5 {
			at = since.Add(-time.Hour)
		}
		e.produceRecords(t, deadLetter(i, at))
	}
	var injected atomic.Bool
	e.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		for _, rt := range fr.Topics {
			for _, rp := range rt.Partitions {
				if rp.FetchOffset == 5 && injected.CompareAndSwap(false, true) {
					return kafkatest.FetchError(fr, kerr.OffsetOutOfRange.Code), nil, true
				}
			}
		}
		return nil, nil, false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := ktransfer.Replay(ctx, e.config(t, 0, m), "m", since, testLog(t))
	if err != nil {
		t.Fatalf("replay: %v (%v)", err, rep)
	}
	if !injected.Load() {
		t.Fatal("no fetch at offset 5 was answered OFFSET_OUT_OF_RANGE")
	}
	count := map[string]int{}
	for _, p := range b.got() {
		count[p.body]++
	}
	for i := range 10 {
		want := 0
		if i >= 5 {
			want = 1
		}
		if n := count["v"+strconv.Itoa(i)]; n != want {
			t.Errorf("dead letter %d pushed %d times, want %d", i, n, want)
		}
	}
	if rep.Replayed != 5 {
		t.Errorf("%v; want 5 replayed", rep)
	}
}
