package ktransfer_test

import (
	"net/http"
	"strconv"
	"sync"
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
	// With breakers too: the busy backend opens, and its trial, due after
	// 10 ms, before the record's retry, is not taken by a record it asked
	// to wait (a trial comes before any closed backend): the record went to
	// sleep for the 30 s while the other backend stood free.
	for _, breakerFailures := range []int{0, 1} {
		t.Run("breaker_failures="+strconv.Itoa(breakerFailures), func(t *testing.T) {
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
			m.BreakerFailures, m.BreakerCooldownMs = breakerFailures, 10
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
		})
	}
}

// TestRetryAfterWaitsForTheEarliestBackend: both backends asked a record
// to wait, the first for 1 s, the second for 30 s: the record goes back
// to the first once its second is up, not after the 30 s.
func TestRetryAfterWaitsForTheEarliestBackend(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	var mu sync.Mutex
	asked := map[string]bool{}
	first := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		mu.Lock()
		defer mu.Unlock()
		if !asked[p.key] {
			asked[p.key] = true
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
		}
	})
	second := newBackend(t, func(_ int, _ push, w http.ResponseWriter) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(503)
	})
	e.produce(t, "t", [][2]string{{"k", "v"}})
	m := module("m", "t", first.URL, second.URL)
	m.FailRetryIntervalMs, m.MaxRetryIntervalMs = 50, 1000
	start := time.Now()
	e.start(t, m)
	waitFor(t, "the record pushed to the first backend again once its 1 s is up", 10*time.Second, func() bool {
		return len(first.got()) >= 2
	})
	t.Logf("delivered %v after the start; %d pushes to the second backend", time.Since(start).Round(time.Millisecond), len(second.got()))
	if len(second.got()) == 0 {
		t.Fatal("the record never went to the second backend: the test proves nothing")
	}
}
