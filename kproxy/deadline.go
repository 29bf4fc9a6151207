package kproxy

import (
	"context"
	"sync/atomic"
	"time"
)

// deadlines hands out the records' deadline contexts. One context serves
// every record arriving within a short span (a hundredth of
// produce_timeout_ms, at most 10 ms) and ends produce_timeout_ms after the
// first of them: a record's deadline is never later than its own
// produce_timeout_ms, at most a span earlier (a record whose arrival came
// before the span's first gets a context of its own). A context and its
// timer per request cost 6-7% of kproxy's CPU under load (profile at
// 40,000 req/s); this costs one per span.
type deadlines struct {
	timeout time.Duration
	span    int64 // ns
	cur     atomic.Pointer[deadlineSpan]
}

type deadlineSpan struct {
	ctx    context.Context
	cancel context.CancelFunc // never called: the context ends at its deadline
	from   time.Time          // the first arrival it serves (its deadline's)
	until  time.Time          // the last arrival it serves
	// prev is the span before it while it is the current one (nil
	// after: spans do not hold a chain of earlier ones alive).
	prev atomic.Pointer[deadlineSpan]
}

// serves tells whether s's context is the deadline context of a record
// that arrived at now. Times are compared by the monotonic clock: a wall
// clock set back does not make arrivals come before a span's first.
func (s *deadlineSpan) serves(now time.Time) bool {
	return s != nil && !now.After(s.until) && !now.Before(s.from)
}

func newDeadlines(timeout time.Duration) *deadlines {
	return &deadlines{timeout: timeout, span: int64(min(10*time.Millisecond, timeout/100))}
}

// get returns the deadline context of a record arriving now.
func (d *deadlines) get() context.Context { return d.at(time.Now()) }

// at returns the deadline context of a record that arrived at now (read
// from the clock just before).
func (d *deadlines) at(now time.Time) context.Context {
	cur := d.cur.Load()
	if cur.serves(now) {
		return cur.ctx
	}
	if cur != nil && now.Before(cur.from) {
		// Arrived before the current span's first (its handler paused
		// between reading the clock and here): that span's deadline
		// would be later than its own. The span before may serve it;
		// else it gets a context of its own, and the span stays.
		if prev := cur.prev.Load(); prev.serves(now) {
			return prev.ctx
		}
		ctx, cancel := context.WithDeadline(context.Background(), now.Add(d.timeout))
		_ = cancel // never called: the context ends at its deadline
		return ctx
	}
	ctx, cancel := context.WithDeadline(context.Background(), now.Add(d.timeout))
	next := &deadlineSpan{ctx: ctx, cancel: cancel, from: now, until: now.Add(time.Duration(d.span))}
	next.prev.Store(cur)
	if d.cur.CompareAndSwap(cur, next) && cur != nil { // another request may have made one too: both are right
		cur.prev.Store(nil)
	}
	return ctx
}
