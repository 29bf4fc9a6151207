package ktransfer_test

import (
	"net/http"
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
	if gap := firstRetryGap(t, e, func(w http.ResponseWriter) {
		w.Header()["retry-after"] = []string{"1"} // written as is, not canonicalized
		w.WriteHeader(503)
	}); gap < 900*time.Millisecond {
		t.Errorf("retried %v after a 503 with retry-after: 1", gap)
	}
}
