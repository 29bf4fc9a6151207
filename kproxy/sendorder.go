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
	mu   sync.Mutex
	cur  *cutContext   // the epoch records handed in deadline order join
	live []*cutContext // the epochs, oldest first; dropped at a cut once their records' deadlines passed
	last time.Time     // the latest deadline handed over
}

// cutContext is an epoch of a topic's records (sendOrder): its channel is
// closed at its cut.
type cutContext struct {
	ch  chan struct{}
	cut atomic.Bool
	// Under the topic's lock.
	latest time.Time // the latest deadline of its records
	at     time.Time // when it is cut; zero: not yet due to be
}

// errCut is the error of a record whose epoch was cut: kgo fails the
// records of a batch headed by one with it (as context.Canceled).
var errCut = fmt.Errorf("a record handed to kafka's client after it, queued with it, reached its deadline first: %w", context.Canceled)

func (c *cutContext) close() {
	if c.cut.CompareAndSwap(false, true) {
		close(c.ch)
	}
}

// done and err are a record's Context field's Done and Err: its epoch's
// cut, or never (nil: no epoch).
func (c *cutContext) done() <-chan struct{} {
	if c == nil {
		return nil
	}
	return c.ch
}

func (c *cutContext) err() error {
	if c == nil || !c.cut.Load() {
		return nil
	}
	return errCut
}

// take gives a record of topic whose deadline is dl's its epoch, for its
// Context field (nil: no deadline), and returns with the topic's lock
// held: the caller hands the record to kgo and then unlocks, so that the
// records leave in the order they took their epochs.
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
		for _, e := range t.live {
			if !e.latest.Before(now) {
				t.live[n] = e
				n++
			}
		}
		clear(t.live[n:])
		t.live = t.live[:n]
		var cut []*cutContext
		for _, e := range t.live {
			if e.latest.After(d) && (e.at.IsZero() || e.at.After(d)) {
				e.at = d
				cut = append(cut, e)
			}
		}
		if len(cut) > 0 {
			time.AfterFunc(time.Until(d), func() {
				for _, e := range cut {
					e.close()
				}
			})
		}
	}
	e := &cutContext{ch: make(chan struct{}), latest: d}
	t.live = append(t.live, e)
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
