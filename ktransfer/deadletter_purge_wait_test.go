package ktransfer_test

import (
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// The dead-letter topic is deleted and created again while another dead
// letter of it is in flight (the broker holds it: the topic's lock is
// held shared). A record given up next gets UNKNOWN_TOPIC_ID, and its
// worker waits for the topic's lock alone to purge the topic from the
// client. When the partition is released meanwhile, that wait ends with
// the write's context: the record is left uncommitted either way, and the
// release (here a stop) must not wait shutdown_timeout_ms for a purge of
// no use to it.
func TestStopDoesNotWaitToPurgeARecreatedDeadLetterTopic(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dl", Partitions: 1})
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dl"
	cfg := e.config(t, 0, m)
	cfg.ShutdownTimeoutMs = 5000
	var logs runtest.Log
	tr, err := ktransfer.New(cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	stop := runtest.Start(t, tr.Run, 20*time.Second)
	e.produce(t, "t", [][2]string{{"k", "first"}})
	waitFor(t, "the first record dead-lettered", 30*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "1" })

	e.recreateTopic(t, "dl", 1)
	unlock := sync.OnceFunc(ktransfer.ShareDeadLetterTopic(tr, "dl"))
	t.Cleanup(unlock)
	e.produce(t, "t", [][2]string{{"k", "second"}})
	waitFor(t, "the worker waiting to purge the topic created again", 30*time.Second, ktransfer.WaitingForDeadLetterLock)
	go func() {
		// The write in flight ends once the stop gave the record up.
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end) && !logged(&logs, "dead-letter write stopped", "offset=1"); {
			time.Sleep(10 * time.Millisecond)
		}
		unlock()
	}()
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("stop took %v", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("stop took %v with shutdown_timeout_ms 5000: the release waited for the dead-letter topic's lock to purge it, though its write's context had ended", took.Round(time.Millisecond))
	}
	if !logged(&logs, "dead-letter write stopped", "offset=1") {
		t.Error("the second record was not left uncommitted by a stopped dead-letter write")
	}
}
