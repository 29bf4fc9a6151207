package ktransfer_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestDeadLetterCountedOnceWhenWritten: a record the backend refuses for
// good (400) goes to the dead-letter topic, which refuses writes for a
// while (an ACL not granted yet: retried). A restart of the module then (a
// reload, a hand-over) stops that write, and the next run gives the record
// up again. ktransfer_failed_total counted the record as given up at each
// run, before any dead letter was written: twice for one record, and while
// none was written. It counts a record given up once its dead letter is
// written.
func TestDeadLetterCountedOnceWhenWritten(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	bk := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	produceN(t, e, 0, 1)
	// From here on, the only writes are the dead letter's.
	var refuse atomic.Bool
	var refused atomic.Int64
	refuse.Store(true)
	e.kafka.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if !refuse.Load() {
			return nil, nil, false
		}
		refused.Add(1)
		return kafkatest.ProduceError(pr, kerr.TopicAuthorizationFailed.Code), nil, true
	})
	c := e.reloadConf(t)
	c.admin = "127.0.0.1:0"
	c.enable(t, "", "m")
	c.module(t, "m", "t", "m", bk.URL, "dead_letter_topic: dlq\n")
	r := startConf(t, c, nil)
	admin := "http://" + r.tr.AdminAddr().String()
	waitFor(t, "the dead-letter write refused", 10*time.Second, func() bool { return refused.Load() >= 1 })

	c.module(t, "m", "t", "m", bk.URL, "dead_letter_topic: dlq\nbreaker_cooldown_ms: 12345\n") // changed: the module restarts
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	before := refused.Load()
	waitFor(t, "the restarted run's dead-letter write refused", 10*time.Second, func() bool { return refused.Load() > before })
	if got := metricValue(t, admin, `ktransfer_failed_total{module="m"}`); got != "0" && got != "" {
		t.Errorf("ktransfer_failed_total %s while no dead letter is written, want 0", got)
	}

	refuse.Store(false)
	waitFor(t, "the dead letter written", 20*time.Second, func() bool {
		return metricValue(t, admin, `ktransfer_dead_lettered_total{module="m"}`) == "1"
	})
	if got := metricValue(t, admin, `ktransfer_failed_total{module="m"}`); got != "1" {
		t.Errorf("ktransfer_failed_total %s after the dead letter of the one record given up, want 1", got)
	}
}
