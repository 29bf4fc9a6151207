package ktransfer_test

import (
	"context"
	"net/http"
	"strconv"
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
// written; the refused writes are counted as such.
func TestDeadLetterCountedOnceWhenWritten(t *testing.T) {
	admin, allow := deadLetterRefusedAcrossAReload(t, http.StatusBadRequest, "")
	if got := metricValue(t, admin, `ktransfer_failed_total{module="m"}`); got != "0" {
		t.Errorf("ktransfer_failed_total %s while no dead letter is written, want 0", got)
	}
	if got, _ := strconv.Atoi(metricValue(t, admin, `ktransfer_dead_letter_write_errors_total{module="m"}`)); got < 1 {
		t.Errorf("ktransfer_dead_letter_write_errors_total %d after the restarted run's write was refused, want 1 or more", got)
	}
	allow()
	if got := metricValue(t, admin, `ktransfer_failed_total{module="m"}`); got != "1" {
		t.Errorf("ktransfer_failed_total %s after the dead letter of the one record given up, want 1", got)
	}
}

// TestDeadLetterOfARecordWithoutMethodCountedOnce: the same for a record
// skipped because it has no method to match (methods set): counted in
// ktransfer_skipped_total{reason="no_method"} once its dead letter is
// written, not by each run whose write was stopped.
func TestDeadLetterOfARecordWithoutMethodCountedOnce(t *testing.T) {
	const skipped = `ktransfer_skipped_total{module="m",reason="no_method"}`
	admin, allow := deadLetterRefusedAcrossAReload(t, http.StatusOK, "methods: [post]\n") // the record's value is no msgpack map
	if got := metricValue(t, admin, skipped); got != "0" && got != "" {
		t.Errorf("no_method skips %s while no dead letter is written, want 0", got)
	}
	allow()
	if got := metricValue(t, admin, skipped); got != "1" {
		t.Errorf("no_method skips %s after the dead letter, want 1", got)
	}
	if got := metricValue(t, admin, `ktransfer_failed_total{module="m"}`); got != "0" {
		t.Errorf("ktransfer_failed_total %s for a record skipped, want 0", got)
	}
}

// deadLetterRefusedAcrossAReload runs module m (dead_letter_topic dlq,
// and extra) on one record, pushed to a backend answering status, with
// every dead-letter write refused (TOPIC_AUTHORIZATION_FAILED: retried);
// the module is restarted by a reload while its write is retried, and it
// returns once the new run's write was refused too, with the admin
// address and allow, which lets the writes through and returns once the
// dead letter is written.
func deadLetterRefusedAcrossAReload(t *testing.T, status int, extra string) (admin string, allow func()) {
	t.Helper()
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	bk := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(status) })
	produceN(t, e, 0, 1)
	// From here on, the only writes are the dead letter's.
	var refuse atomic.Bool
	var refused atomic.Int64
	refuse.Store(true)
	e.kafka.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		if !refuse.Load() {
			return nil, nil, false
		}
		refused.Add(1)
		return kafkatest.ProduceError(req.(*kmsg.ProduceRequest), kerr.TopicAuthorizationFailed.Code), nil, true
	})
	c := e.reloadConf(t)
	c.admin = "127.0.0.1:0"
	c.enable(t, "", "m")
	c.module(t, "m", "t", "m", bk.URL, "dead_letter_topic: dlq\n"+extra)
	r := startConf(t, c, nil)
	admin = "http://" + r.tr.AdminAddr().String()
	waitFor(t, "the dead-letter write refused", 10*time.Second, func() bool { return refused.Load() >= 1 })

	c.module(t, "m", "t", "m", bk.URL, "dead_letter_topic: dlq\n"+extra+"breaker_cooldown_ms: 12345\n") // changed: the module restarts
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	before := refused.Load()
	waitFor(t, "the restarted run's dead-letter write refused", 10*time.Second, func() bool { return refused.Load() > before })
	return admin, func() {
		t.Helper()
		refuse.Store(false)
		waitFor(t, "the dead letter written", 20*time.Second, func() bool {
			return metricValue(t, admin, `ktransfer_dead_lettered_total{module="m"}`) == "1"
		})
	}
}
