package kproxy

import (
	"errors"
	"math"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sys/unix"
)

// heldBehindAnswered returns a spooler and a spooling gate of topic "t"
// with n records of key "hot" held behind a spool=0 record of that key,
// which kgo has just answered (settle): they wait for the appender's
// release.
func heldBehindAnswered(t *testing.T, n int) (*spooler, *gate, []*spoolItem) {
	t.Helper()
	s := &spooler{wake: make(chan struct{}, 1)}
	g := &gate{topic: "t", spooling: true}
	var r gateRec
	g.mu.Lock()
	g.addLocked(&r, &kgo.Record{Topic: "t", Key: []byte("hot"), Value: []byte("r")}, nil) // spool=0, in kgo
	held := make([]*spoolItem, n)
	for i := range held {
		held[i] = newSpoolItem(g, &kgo.Record{Topic: "t", Key: []byte("hot"), Value: []byte(strconv.Itoa(i))}, false, time.Time{})
		s.holdLocked(g, held[i])
	}
	g.mu.Unlock()
	s.settle(&r)
	return s, g, held
}

// linkAgain links a record of key in g's list while g spools, as the
// spool's refusal of a record a flip took does (relinkLocked): handed to
// kgo before the flip, it came before every record held since (seq 0).
func linkAgain(g *gate, n *gateRec, key, value string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.addLocked(n, &kgo.Record{Topic: g.topic, Key: []byte(key), Value: []byte(value)}, nil)
	n.seq = 0
}

// TestSpoolReleaseLinearInQueue attacks the appender's release (held
// records let go are queued among the queued records of their key) with
// many of both: it runs holding the queue's lock and the gate's, stalling
// the spooling of every topic while it does. Placing each released record
// by a search of the queue costs released x queued; a merge costs released
// + queued. Ten times the records cost ten times the CPU when linear (up
// to 30 times under the race detector, whose cost grows with the heap), a
// hundred times when quadratic. The test compares the two by the CPU time
// of the thread running the release, the least of five runs each,
// alternating: the wall clock failed a bound of 1 s at 1.3 s, then a
// ratio of wall times at 101, on a loaded CI machine.
func TestSpoolReleaseLinearInQueue(t *testing.T) {
	prepare := func(released, queued int) *spooler {
		s, g, _ := heldBehindAnswered(t, released)
		for i := range queued {
			it := newSpoolItem(g, &kgo.Record{Topic: "t", Key: []byte("other-" + strconv.Itoa(i)), Value: []byte("v")}, false, time.Time{})
			g.mu.Lock()
			s.holdLocked(g, it)
			g.mu.Unlock()
		}
		return s
	}
	timed := func(released, queued int) time.Duration {
		s := prepare(released, queued)
		runtime.GC() // the collection of what prepare left is not the release's
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start := threadCPU(t)
		s.release()
		took := threadCPU(t) - start
		if len(s.queue) != released+queued {
			t.Fatalf("queue holds %d records after the release, want %d", len(s.queue), released+queued)
		}
		return took
	}
	small, large := time.Duration(math.MaxInt64), time.Duration(math.MaxInt64)
	for range 5 {
		small = min(small, timed(2_000, 5_000))
		large = min(large, timed(20_000, 50_000))
	}
	t.Logf("CPU of the release: 2000 with 5000 queued %v; 20000 with 50000 %v", small, large)
	if ratio := float64(large) / float64(max(small, time.Microsecond)); ratio > 60 {
		t.Errorf("release of 20000 records with 50000 queued took %v of CPU, %.0f times the %v of 2000 with 5000: want about 10 (linear; up to 30 under the race detector), not 100", large, ratio, small)
	}
}

// threadCPU is the CPU time the calling thread has used (to the
// nanosecond; getrusage's counts in ticks).
func threadCPU(t *testing.T) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		t.Fatalf("clock_gettime: %v", err)
	}
	return time.Duration(ts.Nano())
}

// TestSpoolReleaseKeepsKeyOrder attacks where release puts the records let
// go: each before the queued records of its key that came after it, in
// order, never inside a flip's group, and the rest at the end.
func TestSpoolReleaseKeepsKeyOrder(t *testing.T) {
	s, g, held := heldBehindAnswered(t, 3) // hot 0..2
	g2 := &gate{topic: "t2", spooling: true}
	queue := func(g *gate, key, value string) *spoolItem {
		it := newSpoolItem(g, &kgo.Record{Topic: g.topic, Key: []byte(key), Value: []byte(value)}, false, time.Time{})
		g.mu.Lock()
		g.seq++
		it.seq = g.seq
		g.queued++
		g.mu.Unlock()
		s.queue = append(s.queue, it)
		return it
	}
	// A flip's group of t2 (key hot too), then later records of t's keys:
	// as holdBlocked leaves them, or as they arrive once kgo answered.
	f1, f2 := queue(g2, "hot", "f1"), queue(g2, "hot", "f2")
	f1.rest = 1
	o := queue(g, "other", "o")
	h3 := queue(g, "hot", "3")
	h4 := queue(g, "hot", "4")
	s.release()
	want := []*spoolItem{f1, f2, o, held[0], held[1], held[2], h3, h4}
	if len(s.queue) != len(want) {
		t.Fatalf("queue holds %d records, want %d", len(s.queue), len(want))
	}
	for i, it := range s.queue {
		if it != want[i] {
			t.Errorf("queue[%d] = %s/%q (seq %d), want %s/%q", i, it.g.topic, it.rec.Value, it.seq, want[i].g.topic, want[i].rec.Value)
		}
	}

	s2, _, held2 := heldBehindAnswered(t, 2) // nothing queued of their key: at the end
	s2.release()
	if len(s2.queue) != 2 || s2.queue[0] != held2[0] || s2.queue[1] != held2[1] {
		t.Errorf("released records with no later record of their key queued: queue %v, want them in order", s2.queue)
	}
}

// TestSpoolLetGoHeldKeptAtDeadline attacks the promise that a record held
// behind a spool=0 record of its key is written once kgo answers that
// record: kgo answered it, and the record waits only for the appender to
// queue it (release) when its deadline passes, the appender being in a
// long Append. It must not be refused (503) as if kgo had not answered; it
// is queued by the release and appended, or refused should a record of
// its key block it again (it has no waiter left to hold it for).
func TestSpoolLetGoHeldKeptAtDeadline(t *testing.T) {
	s, g, held := heldBehindAnswered(t, 1)
	h := held[0]
	g.withdraw(h) // h's deadline and answerGrace passed
	select {
	case <-h.done:
		_, why := h.refusal()
		t.Fatalf("h refused at its deadline (%v, %q), though kgo answered the record it waited for", h.err, why)
	default:
	}
	s.release()
	if len(s.queue) != 1 || s.queue[0] != h {
		t.Fatalf("h not queued by the release: queue %v", s.queue)
	}
	s.relinked.Add(1) // holdBlocked looks
	defer s.relinked.Add(-1)
	if kept := s.holdBlocked(s.queue); len(kept) != 1 || kept[0] != h {
		t.Errorf("h, let go and queued, not kept for its append: %v", kept)
	}

	// Blocked again once queued (a record of its key linked again): refused.
	s, g, held = heldBehindAnswered(t, 1)
	h = held[0]
	g.withdraw(h)
	s.release()
	var r gateRec
	linkAgain(g, &r, "hot", "r2")
	s.relinked.Add(1)
	defer s.relinked.Add(-1)
	if kept := s.holdBlocked(s.queue); len(kept) != 0 {
		t.Errorf("h, late and blocked again, kept for its append: %v", kept)
	}
	select {
	case <-h.done:
		if !errors.Is(h.err, errHeldPastDeadline) {
			t.Errorf("h, late and blocked again: %v, want refused as held past its deadline", h.err)
		}
	default:
		t.Error("h, late and blocked again, has no outcome (its request no longer waits to be held)")
	}
}

// TestSpoolLetGoHeldBlockedAgainRefused: a held record let go by kgo's
// answer, its request past its deadline meanwhile (withdraw: late, left
// for the release), then blocked again before the release (a record of its
// key the spool refused while kgo has it, linked in again), must get its
// outcome at the release — refused, not written — not wait for kgo's
// answer to that record: a held record waits its deadline and answerGrace
// at most.
func TestSpoolLetGoHeldBlockedAgainRefused(t *testing.T) {
	s, g, held := heldBehindAnswered(t, 1)
	h := held[0]
	g.withdraw(h)
	var f gateRec
	linkAgain(g, &f, "hot", "F")
	s.release()
	select {
	case <-h.done:
		if !errors.Is(h.err, errHeldPastDeadline) {
			t.Errorf("the late record blocked again: %v, want refused as held past its deadline", h.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the late record blocked again at the release has no outcome: it waits for kgo's answer to the record linked in again")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.held) != 0 {
		t.Errorf("%d records still held", len(g.held))
	}
}
