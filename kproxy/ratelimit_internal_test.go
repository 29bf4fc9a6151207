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

// TestRateLimitReloadedRequestGivesBackToTheClient: a request checked by
// the rules before a reload that changed its client's limits, refused 503
// after it (nothing written), gives its records back where the client's
// next requests take them; and the new limits start from what the client
// had left. With a new bucket per changed limit, the records went back to
// the old one, which nothing used any more: the client was throttled for
// records never accepted.
func TestRateLimitReloadedRequestGivesBackToTheClient(t *testing.T) {
	cfg := func(rate float64, burst int) Config {
		return Config{Clients: []Client{{Name: "c", Secret: "pw", RateLimit: rate, Burst: burst}}}
	}
	before, err := newAccess(cfg(0.001, 10), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if v, _ := before.take(before.clients["c"], 6, now); v.code != 0 {
		t.Fatalf("6 of a burst of 10: %+v", v)
	}
	after, err := newAccess(cfg(0.002, 8), before)
	if err != nil {
		t.Fatal(err)
	}
	if v, avail := after.take(after.clients["c"], 5, now); v.code != 429 || avail != 4 {
		t.Errorf("5 records after the reload, 4 left: %+v (%d could pass), want 429 with 4", v, avail)
	}
	before.giveBack(before.clients["c"], 6) // the request checked before the reload, refused 503
	if v, _ := after.take(after.clients["c"], 8, now); v.code != 0 {
		t.Errorf("8 records once the 6 were given back (a burst of 8 full): %+v", v)
	}
	if v, _ := before.take(before.clients["c"], 9, now); v.code != 413 {
		t.Errorf("9 records through the rules before the reload, burst lowered to 8: %+v, want 413", v)
	}
}
