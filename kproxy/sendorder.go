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
// So the records handed to a client, per topic, are in epochs: a record
// handed over with a deadline no earlier than every one handed before
// joins the current epoch; one with an earlier deadline (handed late)
// cuts, at its own deadline, every epoch holding a later deadline than
// its own, and starts a new one. An epoch's cut is its records' Context
// field's Done and Err (pending's, batchItem's). A record whose own
// deadline comes first is failed by it, the cut changes nothing for it;
// one with a later deadline, handed before the late record, may head the
// late record's batch. A batch headed by one of their records, still unsent then,
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
	mu sync.Mutex
	// cur is the epoch records handed in deadline order join.
	cur *cutContext
	// cuts are the cuts to come, by their time (the latest last), each
	// with the epochs it cuts, or the cuts merged into it, linked to it;
	// dropped from the front once the deadlines of what they cut passed.
	cuts []*cutContext
	last time.Time // the latest deadline handed over
}

// cutContext is an epoch of a topic's records (sendOrder), or a cut: an
// epoch's records' Context is done when the cut it is linked to (through
// the cuts merged into earlier ones) is, at the cut's time.
type cutContext struct {
	next atomic.Pointer[cutContext] // the cut it takes; set once
	ch   chan struct{}              // a cut's: closed at its time
	cut  atomic.Bool                // a cut's: closed
	// Under the topic's lock.
	latest time.Time // the latest deadline of the records it holds or cuts
	at     time.Time // a cut's time
}

// errCut is the error of a record whose epoch was cut: kgo fails the
// records of a batch headed by one with it (as context.Canceled).
var errCut = fmt.Errorf("a record handed to kafka's client after it, queued with it, reached its deadline first: %w", context.Canceled)

// root is the cut c takes (itself for a cut not merged, or an epoch not
// cut).
func (c *cutContext) root() *cutContext {
	for {
		n := c.next.Load()
		if n == nil {
			return c
		}
		c = n
	}
}

func (c *cutContext) close() {
	if c.cut.CompareAndSwap(false, true) {
		close(c.ch)
	}
}

// done and err are a record's Context field's Done and Err: its epoch's
// cut, or never (nil: no epoch; an epoch not cut has no channel).
func (c *cutContext) done() <-chan struct{} {
	if c == nil {
		return nil
	}
	return c.root().ch
}

func (c *cutContext) err() error {
	if c == nil || !c.root().cut.Load() {
		return nil
	}
	return errCut
}

// take gives a record of topic whose deadline is dl's its epoch, for its
// Context field (nil: no deadline), and returns with the topic's lock
// held: the caller hands the record to kgo and then unlocks, so that the
// records leave in the order they took their epochs.
//
// A record handed over late (a deadline earlier than the latest handed)
// makes a cut at its deadline: the current epoch is linked to it, and so
// are the cuts to come after it (merged: their epochs take the earlier
// time); the cuts before it stay. So every epoch holding a deadline later
// than a late record's, handed before it, is cut by then at the latest,
// and a late record costs the cuts it merges, each merged once.
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
	if t.cur != nil && !d.Before(t.last) {
		t.cur.latest, t.last = d, d
		return t, t.cur
	}
	if t.cur != nil {
		// Handed over after records of later deadlines: those not sent
		// by its deadline must not carry it.
		now := time.Now()
		n := 0
		for n < len(t.cuts) && t.cuts[n].latest.Before(now) {
			t.cuts[n] = nil
			n++
		}
		t.cuts = t.cuts[n:]
		c := &cutContext{ch: make(chan struct{}), at: d, latest: t.cur.latest}
		t.cur.next.Store(c)
		for len(t.cuts) > 0 && t.cuts[len(t.cuts)-1].at.After(d) {
			top := t.cuts[len(t.cuts)-1]
			t.cuts[len(t.cuts)-1] = nil
			t.cuts = t.cuts[:len(t.cuts)-1]
			top.next.Store(c)
			if top.latest.After(c.latest) {
				c.latest = top.latest
			}
		}
		t.cuts = append(t.cuts, c)
		time.AfterFunc(time.Until(d), c.close)
	}
	e := &cutContext{latest: d}
	t.cur = e
	if d.After(t.last) {
		t.last = d
	}
	return t, e
}

// unlock ends a take.
func (t *topicOrder) unlock() {
	if t != nil {
		t.mu.Unlock()
	}
}
