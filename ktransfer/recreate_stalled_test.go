package ktransfer_test

import (
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRecreatedTopicWhileRestartWaits attacks the promise that a topic
// deleted and created again is read from the new topic's oldest record
// (offset_out_of_range: oldest), that start stored at once, when one of
// its partitions is restarting at that moment. Partition 0 got a passing
// OFFSET_OUT_OF_RANGE (Kafka has the offset) and its restart waits for a
// record its backend refuses; the topic is then deleted and created again,
// and partition 1's fetch finds it so. Partition 0's restart had taken an
// offset of the deleted topic: it read the new topic from there once the
// refused record was taken, skipping the new topic's first records and
// committing its end.
func TestRecreatedTopicWhileRestartWaits(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	var refuse atomic.Bool
	refuse.Store(true)
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if p.body == "hold" && refuse.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	writeKeys(t, e, 0, []string{"a0", "a1", "a2", "a3", "a4", "hold"})
	writeKeys(t, e, 1, []string{"b0", "b1", "b2"})
	// The first fetch of partition 0 past its records is answered
	// OFFSET_OUT_OF_RANGE (for every partition in that request: all of them
	// passing answers, for offsets Kafka has).
	var injected atomic.Bool
	e.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		for _, rt := range fr.Topics {
			for _, rp := range rt.Partitions {
				if rp.Partition == 0 && rp.FetchOffset >= 6 && !injected.Swap(true) {
					return kafkatest.FetchError(fr, kerr.OffsetOutOfRange.Code), nil, true
				}
			}
		}
		return nil, nil, false
	})
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "partition 0 answered OFFSET_OUT_OF_RANGE", 15*time.Second, injected.Load)
	waitFor(t, "partition 1's records pushed", 10*time.Second, func() bool { return pushed(b, "b2") })

	e.recreateTopic(t, "t", 2)
	var news []string
	for i := range 20 {
		news = append(news, "n"+strconv.Itoa(i))
	}
	writeKeys(t, e, 0, news)
	writeKeys(t, e, 1, []string{"m0", "m1", "m2"})
	// kgo reports UNKNOWN_TOPIC_ID after six failed fetches, about 10 s.
	waitFor(t, "the new topic's partition 1 pushed", 30*time.Second, func() bool { return pushed(b, "m2") })
	waitFor(t, "partition 0's start in the new topic stored while hold is still refused", 30*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "0"
	})

	refuse.Store(false)
	waitFor(t, "the new topic's partition 0 committed to its end", 20*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "20" })
	for _, v := range news {
		if !pushed(b, v) {
			t.Errorf("%s, a record of the new topic's partition 0, never pushed, and its end committed", v)
		}
	}
}

// pushed reports whether b received a push of body.
func pushed(b *backend, body string) bool {
	return slices.ContainsFunc(b.got(), func(p push) bool { return p.body == body })
}
