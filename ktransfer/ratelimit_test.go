package ktransfer

import (
	"context"
	"testing"
	"time"
)

func TestLimiterReserve(t *testing.T) {
	t0 := time.Now()
	l := &limiter{rate: 10, burst: 2, tokens: 2, last: t0}
	ms := time.Millisecond
	for i, step := range []struct {
		at   time.Duration // since t0
		want time.Duration
	}{
		{0, 0}, {0, 0}, // the burst
		{0, 100 * ms}, {0, 200 * ms}, {0, 300 * ms}, // then one per 1/rate, in the order asked
		{100 * ms, 300 * ms},                                                    // a token earned meanwhile is already reserved
		{2 * time.Second, 0}, {2 * time.Second, 0}, {2 * time.Second, 100 * ms}, // refilled up to burst, not beyond
	} {
		got, _ := l.reserve(t0.Add(step.at))
		if d := got - step.want; d < -ms || d > ms {
			t.Fatalf("step %d at %v: wait %v, want %v", i, step.at, got, step.want)
		}
	}
	// The last one is given back: the next caller gets its time.
	l.giveBack(t0.Add(2*time.Second), l.seq)
	if got, _ := l.reserve(t0.Add(2 * time.Second)); got < 99*ms || got > 101*ms {
		t.Errorf("after a token was given back: wait %v, want 100ms", got)
	}
}

// TestLimiterGiveBackBehindAWaiter: a token given back by a caller that
// is not the last one waiting (a record of a partition released while it
// waited) was handed out again at the time of a caller queued behind it:
// two attempts at once with burst 1. It is left unused instead; the last
// one's, given back, is the next caller's; then the one before it can be.
func TestLimiterGiveBackBehindAWaiter(t *testing.T) {
	ms := time.Millisecond
	t0 := time.Now()
	l := &limiter{rate: 10, burst: 1, tokens: 1, last: t0}
	l.reserve(t0)            // the burst, at t0
	_, a := l.reserve(t0)    // due at 100 ms
	b, bSeq := l.reserve(t0) // due at 200 ms
	l.giveBack(t0.Add(10*ms), a)
	if c, _ := l.reserve(t0.Add(10 * ms)); (c + 10*ms - b).Abs() < 99*ms {
		t.Errorf("a token given back ahead of a waiter (due %v) went to the next caller, due %v: two attempts at once with burst 1", b, c+10*ms)
	}
	// The last waiter gives back (then the one before it): each next
	// caller gets the time given back.
	l.giveBack(t0.Add(20*ms), l.seq)
	l.giveBack(t0.Add(20*ms), bSeq)
	if c, _ := l.reserve(t0.Add(20 * ms)); (c + 20*ms - b).Abs() > ms {
		t.Errorf("after the last two waiters gave their tokens back, the next caller is due at %v, want %v", c+20*ms, b)
	}
}

func TestLimiterWaitStopsOnCancel(t *testing.T) {
	l := newLimiter(Module{RateLimit: 0.1}) // a token every 10 s, burst 1
	if l.burst != 1 {
		t.Fatalf("burst %v, want the default max(1, rate/10) = 1", l.burst)
	}
	if !l.wait(context.Background()) {
		t.Fatal("the first token must be there")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if l.wait(ctx) {
		t.Fatal("wait took a token not due for 10 s within 50 ms")
	}
	// Well before the token is due, with room for a loaded host.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("wait returned %v after its context ended", d)
	}
	if newLimiter(Module{}) != nil {
		t.Error("no rate_limit must mean no limiter")
	}
	var none *limiter
	if !none.wait(context.Background()) {
		t.Error("no limiter must not wait")
	}
}

// TestLimiterTinyRate: a rate far below minRateLimit (refused by Validate)
// overflowed the wait into a negative one: no limit at all. It is taken as
// minRateLimit.
func TestLimiterTinyRate(t *testing.T) {
	for _, rate := range []float64{1e-11, 1e-300, minRateLimit} {
		l := newLimiter(Module{RateLimit: rate}) // burst 1
		now := time.Now()
		if d, _ := l.reserve(now); d != 0 {
			t.Errorf("rate %g: the burst's token due in %v", rate, d)
		}
		if d, _ := l.reserve(now); d < 999*time.Second || d > 1001*time.Second {
			t.Errorf("rate %g: the second token due in %v, want 1000s (a token per 1/%g s)", rate, d, minRateLimit)
		}
	}
}
