package ktransfer

import (
	"context"
	"net"
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
// distinct backend_servers host:port, shared by the module's workers: a
// backend listed twice, to weight the round robin, has one breaker).
//
// A backend whose pushes failed breaker_failures times in a row (judge
// says retry: a transport error, a timeout, a 5xx, 408, 429) opens: it is
// skipped for its cooldown, its share spread evenly over the closed
// backends. Then the first push to come takes it as a trial (half-open;
// the others still skip it): a success closes it and resets the cooldown
// to breaker_cooldown_ms, a failure opens it again for twice the cooldown,
// up to maxBreakerCooldown. A refusal (another 4xx) is the backend
// answering, not failing: it counts as a success. A push begun before the
// backend's latest opening counts for nothing: the trial decides. When
// every backend is open, pushes wait for the earliest end of a cooldown,
// or for a trial to end; waiting is not an attempt. A push that may not
// wait (a record pinned to one backend by its target, a replay) is told
// so at once instead — unless a backend it may go to asked it, with
// Retry-After, to come back later (acquireFor): that it waits for.
type breakers struct {
	threshold int // breaker_failures; 0: no breaker
	base      time.Duration
	trial     time.Duration        // how long a trial push may last before it counts as failed (trialBound)
	addrs     []string             // per breaker: its backend, as first listed
	of        []int                // per backend_servers entry: its breaker
	opened    []prometheus.Counter // per breaker

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
	gen      uint64        // how many times it opened
	// sent: the half-open trial was sent (usable): its bound runs from
	// since. Until then it waits for ZooKeeper or a token, and only its
	// push ends it (usable, abandon).
	sent bool
}

// choice is the backend_servers entry a push goes to; trial: it is the
// half-open backend's one trial push; gen: the backend's openings when
// the push was chosen.
type choice struct {
	i     int
	trial bool
	gen   uint64
}

// chosen is what a push got from choose.
type chosen int

const (
	chosenBackend chosen = iota // a backend to push to
	chosenOpen                  // none: every backend it may go to is open, and it may not wait
	chosenStopped               // none: ctx ended, or the partition was released
)

func newBreakers(m Module, s *moduleStats) *breakers {
	b := &breakers{
		threshold: m.BreakerFailures, base: time.Duration(m.BreakerCooldownMs) * time.Millisecond,
		trial: trialBound(m.Protocol), of: make([]int, len(m.BackendServers)), changed: make(chan struct{}),
	}
	seen := map[string]int{}
	for i, a := range m.BackendServers {
		key := backendKey(a)
		k, dup := seen[key]
		if !dup {
			k = len(b.addrs)
			seen[key] = k
			b.addrs = append(b.addrs, a)
		}
		b.of[i] = k
	}
	now := time.Now()
	b.b = make([]breaker, len(b.addrs))
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

// minTrialBound is the least a trial push may last before it counts as
// failed: a backend may take long to answer (read_timeout_ms 0, no bound
// of the push's own).
const minTrialBound = 30 * time.Second

// trialBound is how long a half-open backend's trial push may last before
// it counts as a failed trial (the backend opens again, and the next push
// after the cooldown is the next trial): twice the push's own bounds,
// minTrialBound at least. Without it a trial that never ended (a backend
// that accepts and never answers, read_timeout_ms 0) kept the backend
// half-open for good, and every push that had no closed backend left
// waited for it: the module stalled.
func trialBound(p Protocol) time.Duration {
	push := time.Duration(p.ConnTimeoutMs+p.WriteTimeoutMs+p.ReadTimeoutMs) * time.Millisecond
	return max(minTrialBound, 2*push)
}

// backendKey is a backend_servers entry's breaker: its host:port,
// normalized (a host's case and trailing dot do not make another backend).
func backendKey(a string) string {
	if host, port, err := net.SplitHostPort(a); err == nil {
		if hp, ok := normalHostPort(host, port); ok {
			return hp
		}
	}
	return a
}

// inherit takes over the state of the breakers of old, the module's run a
// reload replaced, for each backend both list: a reload that restarts the
// module does not close an open breaker nor start its doubled cooldown
// over. Only when breaker_failures and breaker_cooldown_ms are unchanged:
// with a changed setting the breakers start anew under it. A reload that
// changes the pushes themselves does not call it (samePushes). A trial old
// had under way (its push cut short by the stop) is due at once. The
// series of the openings (ktransfer_breaker_opened_total) go on anyway.
func (b *breakers) inherit(old *breakers) {
	if b.threshold == 0 || old.threshold != b.threshold || old.base != b.base {
		return
	}
	now := time.Now()
	old.mu.Lock()
	was := map[string]breaker{}
	for k, a := range old.addrs {
		s := old.b[k]
		if s.state == stateHalfOpen {
			s.state, s.until, s.sent = stateOpen, now, false
		}
		was[backendKey(a)] = s
	}
	old.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, a := range b.addrs {
		if s, ok := was[backendKey(a)]; ok {
			b.b[k] = s
		}
	}
}

// acquire returns a backend to push to among the count backend_servers
// entries from index from (modulo their number): an open one whose
// cooldown ended, taken as its trial, or else a closed one (round robin
// over the closed ones). When there is none it waits (without spinning:
// until the earliest cooldown ends or a trial ends), or returns chosenOpen at
// once when wait is false; chosenStopped when ctx ends first.
func (b *breakers) acquire(ctx context.Context, from, count int, wait bool) (choice, chosen) {
	return b.acquireFor(ctx, from, count, wait, nil)
}

// acquireFor is acquire for a record that backends asked, with
// Retry-After, not to come back before a time (deferred, per breaker):
// until then such a backend is passed over as an open one is; when each
// candidate is open or deferred and one is deferred, the record waits
// (wait false included: a deferral is no failed attempt) until the
// earliest deferral or cooldown ends, or a trial ends.
func (b *breakers) acquireFor(ctx context.Context, from, count int, wait bool, deferred map[int]time.Time) (choice, chosen) {
	if ctx.Err() != nil {
		return choice{}, chosenStopped
	}
	if b.threshold == 0 && len(deferred) == 0 {
		return choice{i: from % len(b.of)}, chosenBackend
	}
	for {
		b.mu.Lock()
		c, ok, until, changed, held := b.pickFor(time.Now(), from, count, deferred)
		b.mu.Unlock()
		if ok {
			return c, chosenBackend
		}
		if !wait && !held {
			return choice{i: from % len(b.of)}, chosenOpen
		}
		b.waits.Add(1)
		if !waitUntil(ctx, until, changed) {
			return choice{}, chosenStopped
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
// earliest end of a cooldown or of a trial's bound, and the channel closed
// when a trial ends. b.mu is held.
//
// A closed backend is the (from mod closed)-th closed candidate: an open
// backend's share is spread evenly over the closed ones (walking on to
// the next closed one gave the backend after an open one twice the share
// of the others, a cascade waiting to happen).
func (b *breakers) pick(now time.Time, from, count int) (c choice, ok bool, until time.Time, changed <-chan struct{}) {
	c, ok, until, changed, _ = b.pickFor(now, from, count, nil)
	return c, ok, until, changed
}

// pickFor is pick passing over the breakers deferred past now; held: one
// was (its end is among those until is the earliest of).
func (b *breakers) pickFor(now time.Time, from, count int, deferred map[int]time.Time) (c choice, ok bool, until time.Time, changed <-chan struct{}, held bool) {
	n := len(b.of)
	closed := 0
	usable := func(k int) bool {
		if d, ok := deferred[k]; ok && now.Before(d) {
			if until.IsZero() || d.Before(until) {
				until = d
			}
			held = true
			return false
		}
		return true
	}
	for k := range count {
		i := (from + k) % n
		if !usable(b.of[i]) {
			continue
		}
		s := &b.b[b.of[i]]
		if s.state == stateHalfOpen && s.sent {
			if end := s.since.Add(b.trial); now.Before(end) {
				if until.IsZero() || end.Before(until) {
					until = end // when the trial counts as failed: look again then
				}
			} else {
				// The trial has lasted past its bound: failed. Its late
				// answer counts for nothing (another opening, gen).
				s.failures++
				s.cooldown = min(2*s.cooldown, maxBreakerCooldown)
				b.open(b.of[i], now)
				b.broadcast()
			}
		}
		switch s.state {
		case stateClosed:
			closed++
		case stateOpen:
			if !now.Before(s.until) {
				s.state, s.since, s.sent = stateHalfOpen, now, false
				return choice{i: i, trial: true, gen: s.gen}, true, time.Time{}, nil, held
			}
			if until.IsZero() || s.until.Before(until) {
				until = s.until
			}
		}
	}
	if closed == 0 {
		return choice{}, false, until, b.changed, held
	}
	start := from // every entry a candidate: counted from the first, so that from+1 is the next closed one
	if count >= n {
		start = 0
	}
	want := from % closed
	for k := range count {
		i := (start + k) % n
		if s := &b.b[b.of[i]]; s.state == stateClosed && usable(b.of[i]) {
			if want == 0 {
				return choice{i: i, gen: s.gen}, true, time.Time{}, nil, held
			}
			want--
		}
	}
	return choice{}, false, until, b.changed, held // not reached: closed > 0
}

// usable reports whether c may still be pushed to: its trial, or a
// backend still closed (it may have opened while the push waited for a
// token). A trial still on is sent now: its bound (trialBound) runs from
// here, not from its choice, which the waits for ZooKeeper and for a token
// (up to worker_num / rate_limit) may precede by longer than the bound.
// Until then no look of another push counts it failed (sent): under a
// rate-limited backlog the pushes to the other backends did, and a
// recovered backend stayed open as long as the backlog lasted.
func (b *breakers) usable(c choice) bool {
	if b.threshold == 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &b.b[b.of[c.i]]
	if c.trial {
		if s.state != stateHalfOpen || s.gen != c.gen {
			return false
		}
		s.since, s.sent = time.Now(), true
		b.broadcast() // the pushes waiting for it look again: its bound is known now
		return true
	}
	return s.state == stateClosed
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
	s := &b.b[b.of[c.i]]
	if c.gen != s.gen {
		return // counted failed past its bound (pick): the backend opened again since
	}
	s.state, s.since, s.until, s.sent = stateOpen, now, now, false
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
	k := b.of[c.i]
	s := &b.b[k]
	switch {
	case c.trial && c.gen != s.gen:
		// A trial counted failed past its bound (pick): the backend
		// opened again since, and the next trial decides.
	case c.trial && ok:
		s.state, s.since, s.failures, s.cooldown = stateClosed, now, 0, b.base
		b.broadcast()
	case c.trial:
		s.failures++
		s.cooldown = min(2*s.cooldown, maxBreakerCooldown)
		b.open(k, now)
		b.broadcast()
	case c.gen != s.gen:
		// A push begun before the backend's latest opening (it may have
		// closed again since): the trial decides.
	case ok:
		s.failures = 0
	default:
		s.failures++
		if s.failures >= b.threshold {
			b.open(k, now)
		}
	}
}

// open opens breaker k for its cooldown. b.mu is held.
func (b *breakers) open(k int, now time.Time) {
	s := &b.b[k]
	s.state, s.since, s.until = stateOpen, now, now.Add(s.cooldown)
	s.gen++
	b.opened[k].Inc()
}

// broadcast wakes the pushes waiting for a backend. b.mu is held.
func (b *breakers) broadcast() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// forgetBackends removes the breaker series of m's backends that next
// (its run after a reload; nil when the module stopped) does not have: a
// series kept would go on reporting a backend no longer pushed to.
func (m *module) forgetBackends(next *module) {
	keep := map[string]bool{}
	if next != nil && next.breakers.threshold > 0 {
		for _, a := range next.breakers.addrs {
			keep[a] = true
		}
	}
	for _, a := range m.breakers.addrs {
		if !keep[a] {
			m.stats.forgetBackend(a)
		}
	}
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

// choose waits for a backend to push to among count backend_servers
// entries from index from, those deferred for the record passed over
// (see acquireFor; wait false: chosenOpen at once when they are all open
// and none deferred), then, for a record of partition p (nil for a
// replay), until ZooKeeper is fresh (mayPush), then for a token of
// rate_limit. Waiting counts as no attempt of max_retry_times.
//
// ZooKeeper before the token: a token taken before a wait for ZooKeeper
// came due meanwhile, and when ZooKeeper answered again every worker
// pushed at once, worker_num attempts past burst. ZooKeeper silent again
// while the token came due: the token is spent (the limit errs on the
// slow side), and the choice made again.
func (m *module) choose(ctx context.Context, p *partition, from, count int, wait bool, deferred map[int]time.Time) (choice, chosen) {
	for {
		c, g := m.breakers.acquireFor(ctx, from, count, wait, deferred)
		if g != chosenBackend {
			return c, g
		}
		if p != nil && !m.mayPush(p) || !m.limiter.wait(ctx) {
			m.breakers.abandon(c)
			return c, chosenStopped
		}
		if p != nil && !m.zkFresh(p) {
			m.breakers.abandon(c)
			continue
		}
		if m.breakers.usable(c) {
			return c, chosenBackend
		}
		// It opened while this push waited for its token or for
		// ZooKeeper: the token is spent (the limit errs on the slow
		// side); choose again.
	}
}
