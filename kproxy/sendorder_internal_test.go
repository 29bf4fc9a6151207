package kproxy

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// deadlineOnly is a context whose deadline is d, never done.
type deadlineOnly struct {
	context.Context
	d time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.d, true }

// TestSendOrderCutsEveryEarlierLaterDeadline attacks sendOrder's promise
// with random hand-over orders: for every record L handed over, every
// record handed before it whose deadline is later than L's must have its
// Context done by L's deadline (its epoch's cut at or before it) — else it
// can head a batch that carries L after L's deadline. And a record never
// has its Context done before the deadline of a record handed after it
// with an earlier deadline, nor at all when none was: its own deadline
// alone ends it. Deadlines are hours ahead: no cut fires, none is pruned.
func TestSendOrderCutsEveryEarlierLaterDeadline(t *testing.T) {
	base := time.Now().Add(time.Hour)
	for round := range 2000 {
		rng := rand.New(rand.NewPCG(uint64(round), 7))
		var o sendOrder
		n := 2 + rng.IntN(40)
		deadlines := make([]time.Time, n)
		epochs := make([]*cutContext, n)
		for i := range n {
			// Mostly in order, some late by up to 50 steps.
			step := i*10 - rng.IntN(3)*rng.IntN(500)
			deadlines[i] = base.Add(time.Duration(step) * time.Millisecond)
			tp, e := o.take("t", deadlineOnly{context.Background(), deadlines[i]})
			epochs[i] = e
			tp.unlock()
		}
		for i := range n {
			// The earliest deadline of a record handed after i: i's
			// cut may come no earlier, and must come by then if it is
			// earlier than i's own.
			var need time.Time
			for j := i + 1; j < n; j++ {
				if deadlines[j].Before(deadlines[i]) && (need.IsZero() || deadlines[j].Before(need)) {
					need = deadlines[j]
				}
			}
			r := epochs[i].root()
			switch {
			case need.IsZero() && r.ch != nil && r.at.Before(deadlines[i]):
				t.Fatalf("round %d: record %d (deadline +%v) cut at +%v, before its own, with no later record of an earlier deadline",
					round, i, deadlines[i].Sub(base), r.at.Sub(base))
			case !need.IsZero() && (r.ch == nil || r.at.After(need)):
				t.Fatalf("round %d: record %d (deadline +%v), a record handed after it due at +%v: cut %v (at +%v)",
					round, i, deadlines[i].Sub(base), need.Sub(base), r.ch != nil, r.at.Sub(base))
			}
		}
	}
}
