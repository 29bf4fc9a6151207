package ktransfer_test

import (
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestPermanentWithoutDeadLetterIsRetried: without a dead-letter topic a
// record a backend refuses (404) is not given up and committed undelivered:
// it is retried (max_retry_times -1: until it succeeds), each refusal
// logged as an error with its reason, and its offset is committed only once
// it is delivered. A 3xx is retried too.
func TestPermanentWithoutDeadLetterIsRetried(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	var fixed atomic.Bool
	var refused, moved atomic.Int32
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if fixed.Load() {
			return
		}
		switch p.body {
		case "missing":
			refused.Add(1)
			w.WriteHeader(404)
		case "moved":
			moved.Add(1)
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(302)
		}
	})
	m := module("m", "t", b.URL)
	m.MaxRetryTimes = -1
	e.produce(t, "t", [][2]string{{"a", "missing"}, {"b", "moved"}})
	var logs runtest.Log
	tr, err := ktransfer.New(e.config(t, 0, m), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "the 404 and the 302 repeated", 10*time.Second, func() bool { return refused.Load() >= 3 && moved.Load() >= 3 })
	// Let a commit happen if one were due: the periodic one runs every second.
	time.Sleep(1500 * time.Millisecond)
	if got := e.storedOffset(t, "m", "t", 0); got == "1" || got == "2" {
		t.Fatalf("offset %s committed while the first record was refused (404) and never delivered", got)
	}
	if text := logs.String(); !strings.Contains(text, "level=ERROR") || !strings.Contains(text, `reason="status 404"`) {
		t.Errorf("the refusals are not logged as errors with their reason:\n%s", text)
	}
	fixed.Store(true)
	waitFor(t, "both records delivered and committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "2" })
	delivered := map[string]bool{}
	for _, p := range b.got() {
		delivered[p.body] = true
	}
	if !delivered["missing"] || !delivered["moved"] {
		t.Errorf("pushed %v", delivered)
	}
}
