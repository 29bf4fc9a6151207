package ktransfer_test

import (
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRecreatedTopicAcrossARestart: a topic is deleted and created again
// while a record of the deleted topic is still being retried (its backend
// refuses it). The process stops before that record is done, and starts
// again once the backend takes it. The new topic's records are all pushed:
// none is skipped because the stored offset, which names a record of the
// deleted topic, is below the new topic's end.
func TestRecreatedTopicAcrossARestart(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	var refuse atomic.Bool
	refuse.Store(true)
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if p.body == "old3" && refuse.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	m := module("m", "t", b.URL)
	e.produce(t, "t", [][2]string{{"k", "old0"}, {"k", "old1"}, {"k", "old2"}})
	r, admin := e.startAdmin(t, 0, m)
	waitFor(t, "the first records committed", 30*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "3" })
	e.produce(t, "t", [][2]string{{"k", "old3"}})
	waitFor(t, "old3 retried", 30*time.Second, func() bool { return len(b.got()) >= 5 })

	e.recreateTopic(t, "t", 1)
	e.produce(t, "t", [][2]string{{"k", "new0"}, {"k", "new1"}, {"k", "new2"}, {"k", "new3"}, {"k", "new4"}, {"k", "new5"}})
	waitFor(t, "the module finding the topic created again", 25*time.Second, func() bool {
		return metricValue(t, admin, `ktransfer_offset_out_of_range_total{module="m"}`) == "1"
	})
	// Given a moment to store the new topic's start (it used to wait for
	// old3), then stopped: old3 still refused, not a clean stop.
	for end := time.Now().Add(30 * time.Second); e.storedOffset(t, "m", "t", 0) == "3" && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	_ = r.stop()
	refuse.Store(false)

	e.start(t, m)
	waitFor(t, "the new topic's end committed", 20*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "6" })
	var bodies []string // each once, in the order first pushed
	for _, p := range b.got() {
		if !slices.Contains(bodies, p.body) {
			bodies = append(bodies, p.body)
		}
	}
	for _, want := range []string{"new0", "new1", "new2", "new3", "new4", "new5"} {
		if !slices.Contains(bodies, want) {
			t.Errorf("%s never pushed; pushed %v", want, bodies)
		}
	}
}
