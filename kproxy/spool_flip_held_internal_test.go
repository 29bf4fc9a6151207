package kproxy

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSpoolFlipHeldRecordKeepsItsKeyWhenRefused attacks per-key order
// when a flip takes a record a1 (key k) that kgo has behind a spool=0
// record s0 of its key: a1 is held for s0's answer, out of the flip's
// group (o, of another key, is appended at once). Refused at its deadline
// (504, "may have been written") while kgo still has it, a1 may yet be
// written by kgo: a later record b of k, held behind s0, must then wait
// for a1's answer too, not only s0's, lest the drain write b first.
func TestSpoolFlipHeldRecordKeepsItsKeyWhenRefused(t *testing.T) {
	s := &spooler{wake: make(chan struct{}, 1), gates: map[string]*gate{}}
	g := s.gate("t")
	rec := func(key, value string) *kgo.Record {
		return &kgo.Record{Topic: "t", Key: []byte(key), Value: []byte(value)}
	}
	var s0, a1, o gateRec
	g.mu.Lock()
	g.addLocked(&s0, rec("k", "s0"), nil) // spool=0
	g.addLocked(&a1, rec("k", "a1"), g.gen)
	g.addLocked(&o, rec("o", "o"), g.gen)
	s.flipLocked(g)
	b := newSpoolItem(g, rec("k", "b"), false, time.Time{})
	s.holdLocked(g, b)
	g.mu.Unlock()
	if len(s.queue) != 1 || s.queue[0] != o.item {
		t.Fatalf("the flip queued %d records, want o alone", len(s.queue))
	}
	if !slices.Equal(g.held, []*spoolItem{a1.item, b}) {
		t.Fatalf("held %v, want a1 then b", g.held)
	}

	g.withdraw(a1.item) // its deadline passed, s0 unanswered
	if !errors.Is(a1.item.err, errHeldPastDeadline) {
		t.Fatalf("a1 at its deadline: %v, want refused (held past its deadline)", a1.item.err)
	}
	if code, _ := a1.item.refusal(); code != 504 {
		t.Errorf("a1 refused with %d, want 504: kgo may still write it", code)
	}
	if !a1.linked || s.relinked.Load() != 1 {
		t.Fatalf("a1 refused while kgo has it: linked %v, relinked %d; want it linked again", a1.linked, s.relinked.Load())
	}
	if s.settle(&s0) {
		t.Fatal("s0 taken by the flip")
	}
	s.release()
	if !slices.Equal(g.held, []*spoolItem{b}) || len(s.queue) != 1 {
		t.Fatalf("s0 answered, a1 still in kgo: held %v, queue %v; want b held", g.held, s.queue)
	}
	if s.settle(&a1) {
		t.Fatal("a1, linked again, answered as taken")
	}
	s.release()
	if len(g.held) != 0 || len(s.queue) != 2 || s.queue[1] != b || s.relinked.Load() != 0 {
		t.Errorf("a1 answered: held %v, queue %v, relinked %d; want b queued after o", g.held, s.queue, s.relinked.Load())
	}

	// kgo answered a1 before its deadline: nothing is linked again.
	s = &spooler{wake: make(chan struct{}, 1), gates: map[string]*gate{}}
	g = s.gate("t")
	var s1, a2 gateRec
	g.mu.Lock()
	g.addLocked(&s1, rec("k", "s1"), nil)
	g.addLocked(&a2, rec("k", "a2"), g.gen)
	s.flipLocked(g)
	g.mu.Unlock()
	if !s.settle(&a2) {
		t.Fatal("a2 not taken by the flip")
	}
	g.withdraw(a2.item)
	if a2.linked || s.relinked.Load() != 0 || g.out != 1 {
		t.Errorf("a2 answered by kgo, then refused: linked %v, relinked %d, out %d; want s1 alone linked", a2.linked, s.relinked.Load(), g.out)
	}
}

// TestSpoolFlipHeldRecordWaitsOnlyForEarlierOfItsKey: a flip takes a1
// (key k), which kgo has between two spool=0 records of k, s0 before it
// and s2 after it. a1 waits for s0's answer only: held for s2 too, it
// would reach the spool after a record that came after it, and, s2 having
// the later deadline, be refused at its own deadline while Kafka is away.
func TestSpoolFlipHeldRecordWaitsOnlyForEarlierOfItsKey(t *testing.T) {
	s := &spooler{wake: make(chan struct{}, 1), gates: map[string]*gate{}}
	g := s.gate("t")
	var s0, a1, s2 gateRec
	g.mu.Lock()
	g.addLocked(&s0, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("s0")}, nil) // spool=0
	g.addLocked(&a1, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("a1")}, g.gen)
	g.addLocked(&s2, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("s2")}, nil) // spool=0
	s.flipLocked(g)
	g.mu.Unlock()
	if len(s.queue) != 0 || !slices.Equal(g.held, []*spoolItem{a1.item}) {
		t.Fatalf("flip: queue %v, held %v; want a1 held", s.queue, g.held)
	}
	s.settle(&s0)
	s.release()
	if len(g.held) != 0 || len(s.queue) != 1 || s.queue[0] != a1.item {
		t.Errorf("s0 answered, s2 in kgo: held %v, queue %v; want a1 queued", g.held, s.queue)
	}
}
