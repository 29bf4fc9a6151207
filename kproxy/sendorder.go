package kproxy

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// sendOrder keeps the promise that a record whose deadline passed before
// it was sent is never sent later, where kgo keeps it for the first record
// of a batch only: kgo fails a batch whose first record's context (or its
// Context field) is done when the batch is about to be sent (and every
// record of the partition queued behind it), and sends the others of the
// batch with it. A record handed to kgo after records whose deadlines are
// later than its own — its deadline runs from its arrival, and it was
// handed over late: a body sent after Expect: 100-continue, a topic looked
// up first — can sit in a batch behind one of them and leave with it after
// its own deadline, after its client was answered 504 (and sent it again).
//
// So the records of one client and topic handed over in deadline order
// share a generation per deadline, whose context is their Context field's
// Done and Err (pending's, batchItem's), and a record handed over with a
// deadline earlier than one already handed cuts the generations of later
// deadlines at its own: a batch headed by one of their records, still
// unsent then, is failed then (its records are answered with cutReason,
// or 504 when a request of the client was out) instead of carrying the
// late record. The context a record is handed with (its own deadline) is
// left alone: kgo cancels a request that is out with it (acks 0 and 1),
// and a cut must not cancel the requests out before the late record came.
// The records handed after it get generations of their own: the cut does
// not reach them.
type sendOrder struct {
	topics sync.Map // topic → *topicOrder
}

// topicOrder is sendOrder's state for one topic.
type topicOrder struct {
	mu   sync.Mutex
	gens []*sendGen // by deadline; those whose deadline passed are dropped as new ones come
	cur  *sendGen   // the generation records of its deadline join; nil after a cut
	last time.Time  // the latest deadline handed over
}

type sendGen struct {
	ctx      *cutContext
	cancel   context.CancelFunc
	deadline time.Time
	cut      time.Time // when a record handed later with an earlier deadline cuts it; zero: never
}

// errCut is the error of a generation's context cut by a record handed
// later with an earlier deadline: kgo fails the records with it (as
// context.Canceled).
var errCut = fmt.Errorf("a record handed to kafka's client after it, queued with it, reached its deadline first: %w", context.Canceled)

// cutContext is a generation's context: done at its deadline, or when
// cut, then its error errCut.
type cutContext struct {
	context.Context
	cut atomic.Bool
}

func (c *cutContext) Err() error {
	if err := c.Context.Err(); err == context.Canceled && c.cut.Load() {
		return errCut
	}
	return c.Context.Err()
}

// take is the generation of a record of topic whose deadline is dl's, for
// its Context field; nil for a record handed over after records of later
// deadlines (it cuts their generations), or without a deadline.
func (o *sendOrder) take(topic string, dl context.Context) *cutContext {
	d, ok := dl.Deadline()
	if !ok {
		return nil
	}
	v, ok := o.topics.Load(topic)
	if !ok {
		v, _ = o.topics.LoadOrStore(topic, &topicOrder{})
	}
	t := v.(*topicOrder)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !d.Before(t.last) {
		if t.cur != nil && t.cur.deadline.Equal(d) {
			return t.cur.ctx
		}
		now := time.Now()
		n := 0
		for n < len(t.gens) && t.gens[n].deadline.Before(now) {
			n++
		}
		t.gens = append(t.gens[:0], t.gens[n:]...)
		ctx, cancel := context.WithDeadline(context.Background(), d)
		g := &sendGen{ctx: &cutContext{Context: ctx}, cancel: cancel, deadline: d}
		t.gens = append(t.gens, g)
		t.cur, t.last = g, d
		return g.ctx
	}
	// Handed over after records of later deadlines: those not sent by its
	// deadline must not carry it.
	var cut []*sendGen
	for i := len(t.gens) - 1; i >= 0 && t.gens[i].deadline.After(d); i-- {
		if g := t.gens[i]; g.cut.IsZero() || g.cut.After(d) {
			g.cut = d
			cut = append(cut, g)
		}
	}
	t.cur = nil
	if len(cut) > 0 {
		time.AfterFunc(time.Until(d), func() {
			for _, g := range cut {
				g.ctx.cut.Store(true)
				g.cancel()
			}
		})
	}
	return nil
}

// done and err are a record's Context field's Done and Err: its
// generation's (sendOrder), or never done.
func (c *cutContext) done() <-chan struct{} {
	if c == nil {
		return nil
	}
	return c.Done()
}

func (c *cutContext) err() error {
	if c == nil {
		return nil
	}
	return c.Err()
}
