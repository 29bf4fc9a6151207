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

// A worker waiting for its dead-letter topic's lock (held by another
// write the broker holds, or a client being retired) when its partition
// is released gives the write up at once: a write whose context ended is not sent, so
// the stop must not wait shutdown_timeout_ms for the lock.
func TestStopDoesNotWaitForADeadLetterLockItCannotUse(t *testing.T) {
	e, tr, logs, stop := startRefusingIntoDeadLetters(t, "dlq")
	waitFor(t, "partition 0 claimed", 30*time.Second, func() bool { return len(tr.Status()[0].Partitions) == 1 })
	unlock := sync.OnceFunc(ktransfer.LockDeadLetterTopic(tr, "dlq"))
	t.Cleanup(unlock)
	writeKeys(t, e, 0, []string{"c"})
	waitFor(t, "the worker waiting for the dead-letter lock", 30*time.Second, ktransfer.WaitingForDeadLetterLock)
	// The lock's holder ends when the client closes, after the stop gave
	// the partition up: given back once the write is stopped.
	if took := stopUnlockingWhenStopped(t, stop, logs, "offset=0", unlock); took > 2*time.Second {
		t.Errorf("stop took %v with shutdown_timeout_ms 5000: the release waited for a dead-letter lock its write could no longer use (its context ended at once)", took.Round(time.Millisecond))
	}
}

// startRefusingIntoDeadLetters runs a ktransfer whose module m reads topic t (one
// partition) and dead-letters into dl every record, its backend refusing
// each for good (400), with shutdown_timeout_ms 5000.
func startRefusingIntoDeadLetters(t *testing.T, dl string) (e *env, tr *ktransfer.Transfer, logs *runtest.Log, stop func() error) {
	e = newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: dl, Partitions: 1})
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = dl
	cfg := e.config(t, 0, m)
	cfg.ShutdownTimeoutMs = 5000
	logs = new(runtest.Log)
	tr, err := ktransfer.New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return e, tr, logs, runtest.Start(t, tr.Run, 20*time.Second)
}

// stopUnlockingWhenStopped stops the process and calls unlock once its
// dead-letter write of the record at offset (offset=N) is logged as
// stopped, as a lock's holder ends once the stop gave the record up. It
// returns how long the stop took.
func stopUnlockingWhenStopped(t *testing.T, stop func() error, logs *runtest.Log, offset string, unlock func()) time.Duration {
	t.Helper()
	go func() {
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end) && !logged(logs, "dead-letter write stopped", offset); {
			time.Sleep(10 * time.Millisecond)
		}
		unlock()
	}()
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}
