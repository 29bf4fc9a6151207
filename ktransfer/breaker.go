package ktransfer

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxBreakerCooldown caps the doubling of breaker_cooldown_ms.
const maxBreakerCooldown = 60 * time.Second

// breakerState is a backend's circuit breaker state.
type breakerState int

const (
	stateClosed   breakerState = iota // pushed to
	stateHalfOpen                     // one trial push is deciding
	stateOpen                         // skipped until its cooldown ends
)

func (s breakerState) String() string {
	switch s {
	case stateOpen:
		return "open"
	case stateHalfOpen:
		return "half_open"
	}
	return "closed"
}

// breakers are the circuit breakers of a module's backends (one per
// backend_servers entry, shared by the module's workers).
//
// A backend whose pushes failed breaker_failures times in a row (judge
// says retry: a transport error, a timeout, a 5xx, 408, 429) opens: it is
// skipped for its cooldown. Then the first push to come takes it as a
// trial (half-open; the others still skip it): a success closes it and
// resets the cooldown to breaker_cooldown_ms, a failure opens it again for
// twice the cooldown, up to maxBreakerCooldown. A refusal (another 4xx) is
// the backend answering, not failing: it counts as a success. When every
// backend is open, pushes wait for the earliest end of a cooldown, or for
// a trial to end; waiting is not an attempt.
type breakers struct {
	threshold int // breaker_failures; 0: no breaker
	base      time.Duration
	addrs     []string
	opened    []prometheus.Counter // per backend

	mu      sync.Mutex
	b       []breaker
	changed chan struct{} // closed and replaced when a trial ends: waiters look again

	waits atomic.Int64 // how often a push found no backend to use and waited
}

// breaker is one backend's state.
type breaker struct {
	state    breakerState
	since    time.Time
	failures int           // consecutive failed pushes (trials included)
	cooldown time.Duration // of the current opening, or the next
	until    time.Time     // open: when a trial may start
}

// choice is the backend a push goes to; trial: it is the half-open
// backend's one trial push.
type choice struct {
	i     int
	trial bool
}

func newBreakers(m Module, s *moduleStats) *breakers {
	b := &breakers{
		threshold: m.BreakerFailures, base: time.Duration(m.BreakerCooldownMs) * time.Millisecond,
		addrs: m.BackendServers, b: make([]breaker, len(m.BackendServers)), changed: make(chan struct{}),
	}
	now := time.Now()
	for i := range b.b {
		b.b[i] = breaker{since: now, cooldown: b.base}
	}
	if b.threshold > 0 {
		for _, a := range b.addrs {
			b.opened = append(b.opened, s.breakerOpened(a))
		}
	}
	return b
}

// acquire returns the first backend to push to among the count backends
// from index from (round robin, modulo their number): a closed one, or an
// open one whose cooldown ended, taken as its trial. When there is none it
// waits (without spinning: until the earliest cooldown ends or a trial
// ends); false when ctx ends first.
func (b *breakers) acquire(ctx context.Context, from, count int) (choice, bool) {
	if b.threshold == 0 {
		return choice{i: from % len(b.b)}, ctx.Err() == nil
	}
	for {
		b.mu.Lock()
		c, ok, until, changed := b.pick(time.Now(), from, count)
		b.mu.Unlock()
		if ok {
			return c, true
		}
		b.waits.Add(1)
		if !waitUntil(ctx, until, changed) {
			return choice{}, false
		}
	}
}

// waitUntil waits until the time until (none when zero) or until changed
// is closed; false when ctx ends first.
func waitUntil(ctx context.Context, until time.Time, changed <-chan struct{}) bool {
	var timeout <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
	case <-changed:
	case <-ctx.Done():
		return false
	}
	return true
}

// pick is acquire's choice at now, without waiting: ok false, with the
// earliest end of a cooldown (zero when every candidate is on trial) and
// the channel closed when a trial ends. b.mu is held.
func (b *breakers) pick(now time.Time, from, count int) (c choice, ok bool, until time.Time, changed <-chan struct{}) {
	for k := range count {
		i := (from + k) % len(b.b)
		s := &b.b[i]
		switch s.state {
		case stateClosed:
			return choice{i: i}, true, time.Time{}, nil
		case stateOpen:
			if !now.Before(s.until) {
				s.state, s.since = stateHalfOpen, now
				return choice{i: i, trial: true}, true, time.Time{}, nil
			}
			if until.IsZero() || s.until.Before(until) {
				until = s.until
			}
		}
	}
	return choice{}, false, until, b.changed
}

// usable reports whether c may still be pushed to: its trial, or a
// backend still closed (it may have opened while the push waited for a
// token).
func (b *breakers) usable(c choice) bool {
	if b.threshold == 0 || c.trial {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b[c.i].state == stateClosed
}

// abandon gives back a choice that was not pushed: a trial not made lets
// the next push make it.
func (b *breakers) abandon(c choice) {
	if !c.trial {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	s := &b.b[c.i]
	s.state, s.since, s.until = stateOpen, now, now
	b.broadcast()
}

// report records the outcome of a push to c.
func (b *breakers) report(c choice, v verdict) {
	if b.threshold == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reportAt(c, v != retry, time.Now())
}

func (b *breakers) reportAt(c choice, ok bool, now time.Time) {
	s := &b.b[c.i]
	switch {
	case c.trial && ok:
		s.state, s.since, s.failures, s.cooldown = stateClosed, now, 0, b.base
		b.broadcast()
	case c.trial:
		s.failures++
		s.cooldown = min(2*s.cooldown, maxBreakerCooldown)
		b.open(c.i, now)
		b.broadcast()
	case s.state != stateClosed:
		// A push begun before the backend opened: the trial decides.
	case ok:
		s.failures = 0
	default:
		s.failures++
		if s.failures >= b.threshold {
			b.open(c.i, now)
		}
	}
}

// open opens backend i for its cooldown. b.mu is held.
func (b *breakers) open(i int, now time.Time) {
	s := &b.b[i]
	s.state, s.since, s.until = stateOpen, now, now.Add(s.cooldown)
	b.opened[i].Inc()
}

// broadcast wakes the pushes waiting for a backend. b.mu is held.
func (b *breakers) broadcast() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// BackendStatus is one backend's circuit breaker in /status.
type BackendStatus struct {
	Backend  string    `json:"backend"`
	State    string    `json:"state"` // closed, open or half_open
	Since    time.Time `json:"since"`
	Failures int       `json:"consecutive_failures"`
	// CooldownMs is the current opening's cooldown (open, half_open), or
	// the next one's (closed).
	CooldownMs int64 `json:"cooldown_ms"`
	// TrialAt is when an open backend gets its trial push.
	TrialAt *time.Time `json:"trial_at,omitempty"`
}

// status is every backend's breaker; nil without breakers.
func (b *breakers) status() []BackendStatus {
	if b.threshold == 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]BackendStatus, len(b.b))
	for i, s := range b.b {
		out[i] = BackendStatus{Backend: b.addrs[i], State: s.state.String(), Since: s.since,
			Failures: s.failures, CooldownMs: s.cooldown.Milliseconds()}
		if s.state == stateOpen {
			at := s.until
			out[i].TrialAt = &at
		}
	}
	return out
}

// choose waits for a backend to push to, trying them in round-robin order
// from index from among count backends (open ones skipped), then for a token of rate_limit; it
// reports false when ctx ends first. Waiting counts as no attempt of
// max_retry_times.
func (m *module) choose(ctx context.Context, from, count int) (choice, bool) {
	for {
		c, ok := m.breakers.acquire(ctx, from, count)
		if !ok {
			return c, false
		}
		if !m.limiter.wait(ctx) {
			m.breakers.abandon(c)
			return c, false
		}
		if m.breakers.usable(c) {
			return c, true
		}
		// It opened while this push waited for its token: the token is
		// spent (the limit errs on the slow side); choose again.
	}
}
