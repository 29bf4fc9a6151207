package ktransfer_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRetryAfterHoldsForItsBackend: a Retry-After is the backend's that
// sent it (RFC 9110 10.2.3: how long the client ought to wait before a
// follow-up request to it). A record refused 429 with Retry-After: 30 by
// one backend is retried on the next after fail_retry_interval_ms, and
// is not sent back to the first within the 30 s. Before, every retry of
// the record waited the 30 s, whichever backend it went to next.
func TestRetryAfterHoldsForItsBackend(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	busy := newBackend(t, func(_ int, _ push, w http.ResponseWriter) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(429)
	})
	ok := newBackend(t, nil)
	var recs [][2]string
	for i := range 6 {
		recs = append(recs, [2]string{"k" + strconv.Itoa(i), "v" + strconv.Itoa(i)})
	}
	e.produce(t, "t", recs)
	m := module("m", "t", busy.URL, ok.URL)
	m.FailRetryIntervalMs, m.MaxRetryIntervalMs = 50, 1000
	start := time.Now()
	e.start(t, m)
	waitFor(t, "every record pushed to the backend that answers 200 (the other asked for 30 s)", 10*time.Second, func() bool {
		return len(ok.got()) >= len(recs)
	})
	t.Logf("all %d records delivered %v after the start; %d pushes to the busy backend", len(recs),
		time.Since(start).Round(time.Millisecond), len(busy.got()))
	if len(busy.got()) == 0 {
		t.Fatal("no record went to the busy backend first: the test proves nothing")
	}
	seen := map[string]int{}
	for _, p := range busy.got() {
		if seen[p.key]++; seen[p.key] > 1 {
			t.Errorf("record of key %s pushed again to the backend that asked for 30 s", p.key)
		}
	}
}
