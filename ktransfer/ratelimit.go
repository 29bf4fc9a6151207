package ktransfer

import (
	"context"
	"sync"
	"time"
)

// limiter is a module's rate_limit: a token bucket of burst tokens filled
// at rate tokens per second, shared by the module's workers. Every push
// attempt takes a token, retries and breaker trials included: the limit
// protects the backends, and they see every attempt.
//
// A caller reserves its token at once and sleeps until it is due (tokens
// go negative while callers wait), so waiting callers are served in the
// order they asked, each exactly 1/rate after the one before.
type limiter struct {
	rate  float64 // tokens per second
	burst float64

	mu     sync.Mutex
	tokens float64   // may be negative: tokens reserved by waiting callers
	last   time.Time // when tokens was last brought up to date
	seq    uint64    // the last reservation's number (reserve)
}

// minRateLimit is the smallest rate_limit: a token every 1000 s. Far
// smaller rates overflowed the wait (time.Duration), which then meant no
// limit at all.
const minRateLimit = 0.001

// newLimiter returns m's limiter, nil without a rate_limit. A rate below
// minRateLimit (refused by Validate) is taken as minRateLimit.
func newLimiter(m Module) *limiter {
	if m.RateLimit <= 0 {
		return nil
	}
	b := float64(m.burst())
	return &limiter{rate: max(m.RateLimit, minRateLimit), burst: b, tokens: b, last: time.Now()}
}

// inherit takes over the tokens old, the limiter of the module's run a
// reload replaced, has left (at most l's burst): a reload that restarts
// the module does not give it a full burst again. Not below 0: old's run
// has stopped, and a negative balance is tokens its callers reserved and
// never used (an attempt is made once its token is due, and the balance
// is back to 0 then); taken over, each reload added its waiters' to a
// debt the module paid back pushing nothing (20 reloads: 22 s at
// rate_limit 5). A nil l or old changes nothing.
func (l *limiter) inherit(old *limiter) {
	if l == nil || old == nil {
		return
	}
	now := time.Now()
	old.mu.Lock()
	old.advance(now)
	tokens := old.tokens
	old.mu.Unlock()
	l.mu.Lock()
	l.tokens, l.last = min(max(tokens, 0), l.burst), now
	l.mu.Unlock()
}

// wait takes a token, waiting until it is due; it reports false, the
// token given back, when ctx ends first. A nil limiter never waits.
func (l *limiter) wait(ctx context.Context) bool {
	if l == nil {
		return ctx.Err() == nil
	}
	d, seq := l.reserve(time.Now())
	if sleep(ctx, d) {
		return true
	}
	l.giveBack(time.Now(), seq)
	return false
}

// reserve takes a token and returns how long until it is due, and the
// reservation's number (giveBack).
func (l *limiter) reserve(now time.Time) (time.Duration, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.advance(now)
	l.tokens--
	l.seq++
	if l.tokens >= 0 {
		return 0, l.seq
	}
	return time.Duration(-l.tokens / l.rate * float64(time.Second)), l.seq
}

// giveBack returns reservation seq's token, not used, when no caller
// reserved one after it: the next one to ask then takes its time. Behind
// a later reservation it is left unused (the limit errs on the slow side):
// the callers waiting behind it keep their times, set 1/rate apart, and a
// token given back on top of them was handed out again at a time one of
// them holds (a partition released while its records waited for tokens
// doubled the rate of the others for a while).
func (l *limiter) giveBack(now time.Time, seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq != l.seq {
		return
	}
	l.seq-- // the one before may give its token back now
	l.advance(now)
	l.tokens = min(l.tokens+1, l.burst)
}

// advance adds the tokens earned since l.last, up to burst.
func (l *limiter) advance(now time.Time) {
	if now.After(l.last) {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
		l.last = now
	}
}
