package ktransfer_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRetryCountedWhenMade: ktransfer_retries_total counts push attempts
// that failed and were tried again. It counted a retry when the backoff
// before it began: a record caught in its backoff by a release, a reload
// or a stop (every hand-over has some) counted a retry never made. A
// failed push with 2 s of backoff ahead, or a short backoff and its
// backend's breaker open for 2 s, counts nothing yet; the retry, once
// made, counts one.
func TestRetryCountedWhenMade(t *testing.T) {
	for _, breaker := range []bool{false, true} {
		retryCountedWhenMade(t, breaker)
	}
}

// retryCountedWhenMade: the retry is 2 s away, in its backoff, or (with
// breaker) its backoff short and the backend's breaker open for 2 s.
func retryCountedWhenMade(t *testing.T, breaker bool) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", [][2]string{{"k", "v"}})
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
	m := module("m", "t", b.URL)
	m.FailRetryIntervalMs, m.MaxRetryIntervalMs = 2000, 2000
	if breaker {
		m.FailRetryIntervalMs, m.MaxRetryIntervalMs = 50, 50
		m.BreakerFailures, m.BreakerCooldownMs = 1, 2000
	}
	_, admin := e.startAdmin(t, 0, m)
	series := `ktransfer_retries_total{module="m"}`
	waitFor(t, "the first push", 10*time.Second, func() bool { return len(b.got()) >= 1 })
	time.Sleep(300 * time.Millisecond)
	if v := metricValue(t, admin, series); v != "0" {
		t.Errorf("one push failed, its retry 2 s away (breaker open: %v): %s = %s, want 0", breaker, series, v)
	}
	waitFor(t, "the retry", 10*time.Second, func() bool { return len(b.got()) >= 2 })
	waitFor(t, "the retry counted", 2*time.Second, func() bool { return metricValue(t, admin, series) != "0" })
	if n, v := len(b.got()), metricValue(t, admin, series); v != "1" && !(n > 2 && v == "2") {
		t.Errorf("%d pushes made: %s = %s, want one fewer", n, series, v)
	}
}
