package ktransfer_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestTransientUnknownTopicIDRestartsNothing: brokers answer a module's
// fetches with UNKNOWN_TOPIC_ID for a while although the topic was neither
// deleted nor created again (a broker that does not know the topic's id
// yet). The module goes on from where it was: it neither pushes the
// topic again from its oldest record nor skips anything.
func TestTransientUnknownTopicIDRestartsNothing(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	var recs [][2]string
	for i := range 5 {
		recs = append(recs, [2]string{"k", strconv.Itoa(i)})
	}
	e.produce(t, "t", recs)
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the first records committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "5" })

	// The next 8 fetches that name a topic are answered UNKNOWN_TOPIC_ID
	// (kgo reports it after five in a row).
	var left atomic.Int32
	left.Store(8)
	e.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fr := req.(*kmsg.FetchRequest)
		if len(fr.Topics) == 0 || left.Add(-1) < 0 {
			return nil, nil, false
		}
		e.kafka.KeepControl()
		return kafkatest.FetchError(fr, kerr.UnknownTopicID.Code), nil, true
	})
	waitFor(t, "the injected answers used", 15*time.Second, func() bool { return left.Load() < 0 })

	e.produce(t, "t", [][2]string{{"k", "5"}})
	waitFor(t, "the next record committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "6" })
	var bodies []string
	for _, p := range b.got() {
		bodies = append(bodies, p.body)
	}
	if len(bodies) != 6 || bodies[5] != "5" {
		t.Errorf("pushed %v, want 0 1 2 3 4 5, each once", bodies)
	}
}
