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
// So each record handed to a client gets a generation of its topic, one
// per deadline run (the records handed over one after the other with the
// same deadline share it), whose context is its Context field's Done and
// Err (pending's, batchItem's); and a record handed over with a deadline
// earlier than one already handed cuts the generations of later deadlines
// at its own. A batch headed by one of their records, still unsent then,
// is failed then — with every record of its partition queued behind it,
// as kgo fails a partition's records — answered with cutReason (503), or
// 504 when a request of the client was out. The context a record is
// handed with (its own deadline) is left alone: kgo cancels a request that
// is out with it (acks 0 and 1), and a cut does not cancel one; a request
// that failed (a broken connection, a leader moved) is not sent again for
// a record whose generation was cut. A topic's records take their
// generations and are handed to kgo under the topic's lock, in one order.
//
// The cut is per topic: kgo picks the partition inside Produce. During a
// stall longer than the late record's deadline, the unsent records of the
// topic's other partitions handed before it are answered at its deadline,
// up to its lateness before their own.
//
// Not covered: records handed through a spooling topic's gate (their
// context is the gate's generation, which the spool's flip ends), and a
// batch that kgo adds to a request while an earlier batch of its
// partition is out (acks=-1, or max_in_flight_requests above 1): kgo
// checks no context of it.
type sendOrder struct {
	topics sync.Map // topic → *topicOrder
}

// topicOrder is sendOrder's state for one topic.
type topicOrder struct {
	mu   sync.Mutex
	gens []*sendGen // live: those whose deadline passed are dropped as new ones come
	prev *sendGen   // the generation of the record handed over last
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

// take gives a record of topic whose deadline is dl's its generation, for
// its Context field (nil: no deadline), and returns with the topic's lock
// held: the caller hands the record to kgo and then unlocks, so that the
// records leave in the order their generations were given. A record
// handed over after records of later deadlines cuts their generations at
// its own; it gets a generation too, which a record handed after it with
// an earlier deadline still cuts in turn.
func (o *sendOrder) take(topic string, dl context.Context) (*topicOrder, *cutContext) {
	d, ok := dl.Deadline()
	if !ok {
		return nil, nil
	}
	v, ok := o.topics.Load(topic)
	if !ok {
		v, _ = o.topics.LoadOrStore(topic, &topicOrder{})
	}
	t := v.(*topicOrder)
	t.mu.Lock()
	if t.prev != nil && t.prev.deadline.Equal(d) {
		// Nothing handed over since the record before, of the same
		// deadline: what it cut is cut, and nothing cut it.
		return t, t.prev.ctx
	}
	now := time.Now()
	n := 0
	for _, g := range t.gens {
		if !g.deadline.Before(now) {
			t.gens[n] = g
			n++
		}
	}
	clear(t.gens[n:])
	t.gens = t.gens[:n]
	if d.Before(t.last) {
		// Handed over after records of later deadlines: those not sent
		// by its deadline must not carry it.
		var cut []*sendGen
		for _, g := range t.gens {
			if g.deadline.After(d) && (g.cut.IsZero() || g.cut.After(d)) {
				g.cut = d
				cut = append(cut, g)
			}
		}
		if len(cut) > 0 {
			time.AfterFunc(time.Until(d), func() {
				for _, g := range cut {
					g.ctx.cut.Store(true)
					g.cancel()
				}
			})
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), d)
	g := &sendGen{ctx: &cutContext{Context: ctx}, cancel: cancel, deadline: d}
	t.gens = append(t.gens, g)
	t.prev = g
	if d.After(t.last) {
		t.last = d
	}
	return t, g.ctx
}

// unlock ends a take.
func (t *topicOrder) unlock() {
	if t != nil {
		t.mu.Unlock()
	}
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
