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
	from   int64              // unix ns: the first arrival it serves (its deadline's)
	until  int64              // unix ns: the last arrival it serves
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
	at := now.UnixNano()
	if cur != nil && at <= cur.until && at >= cur.from {
		return cur.ctx
	}
	ctx, cancel := context.WithDeadline(context.Background(), now.Add(d.timeout))
	next := &deadlineSpan{ctx: ctx, cancel: cancel, from: at, until: at + d.span}
	if cur == nil || at > cur.from {
		// Not for an arrival before the current span's first (its
		// handler paused between reading the clock and here): the
		// span's deadline would be later than its own.
		d.cur.CompareAndSwap(cur, next) // another request may have made one too: both are right
	}
	return ctx
}
