package ktransfer_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRetryAfterAnyCase: header names are case-insensitive (RFC 9110
// 5.1): a backend that answers 503 with "retry-after: 1", as servers
// writing their header names in lower case do, gets its retry no sooner
// than that, as with "Retry-After: 1" (TestRetryAfterIsHonoured).
func TestRetryAfterAnyCase(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	var times []time.Time
	var mu sync.Mutex
	b := newBackend(t, func(n int, _ push, w http.ResponseWriter) {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if n == 0 {
			w.Header()["retry-after"] = []string{"1"} // written as is, not canonicalized
			w.WriteHeader(503)
		}
	})
	e.produce(t, "t", [][2]string{{"k", "x"}})
	e.start(t, module("m", "t", b.URL)) // fail_retry_interval_ms is 10 ms
	waitFor(t, "the second attempt", 10*time.Second, func() bool { return len(b.got()) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if gap := times[1].Sub(times[0]); gap < 900*time.Millisecond {
		t.Errorf("retried %v after a 503 with retry-after: 1", gap)
	}
}
