package kproxy

import (
	"math"
	"testing"
	"time"
)

// TestRateLimitTinyRateRetryAfter: a client whose rate_limit is tiny
// (valid: > 0, finite) is told to come back when its next token is there,
// however far — not in 1 s because short/rate seconds overflowed
// time.Duration (on amd64 to math.MinInt64, which max(..., 1) made 1 ns).
// golang.org/x/time/rate, used before, capped such a wait at InfDuration;
// kproxy caps it at the largest retry_after a gRPC answer holds (int32).
func TestRateLimitTinyRateRetryAfter(t *testing.T) {
	a, err := newAccess(Config{Clients: []Client{{Name: "slow", Secret: "pw", RateLimit: 1e-12}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rule := a.clients["slow"]
	now := time.Now()
	if v, _ := a.take(rule, 1, now); v.code != 0 {
		t.Fatalf("first record: %+v", v)
	}
	v, _ := a.take(rule, 1, now.Add(time.Second))
	if v.code != 429 {
		t.Fatalf("second record: %+v, want 429", v)
	}
	// The next token comes in 1e12 s (about 31,700 years).
	if v.retryAfter < 3600 {
		t.Errorf("Retry-After %d s, but the next token is 1e12 s away", v.retryAfter)
	}
	if v.retryAfter > math.MaxInt32 {
		t.Errorf("Retry-After %d s does not fit a gRPC answer's retry_after (int32)", v.retryAfter)
	}
}
