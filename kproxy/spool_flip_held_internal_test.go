package kproxy

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
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

// TestSpoolFlipHeldRefusedRefusesLaterOfKey attacks the promise that once a
// record is refused, the later records of its key in the same /batch or
// gRPC request are refused with it, never written without it, for the
// records a flip holds (behind a spool=0 record of their key that kgo
// has). a1 and a2 (key k) of one request are in kgo behind s0 when the
// topic flips: both are held. At the request's deadline a1 is given up
// first (504) and linked again; kgo then answers s0 and a1 (not written)
// before a2 is given up: a2 is no longer blocked, and the appender must
// refuse it rather than append it alone. The same holds when the earlier
// record is one of the flip's group the spool refused (full): a2, held
// behind a spool=0 record handed over between them, comes after it.
func TestSpoolFlipHeldRefusedRefusesLaterOfKey(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	rec := func(key, value string) *kgo.Record {
		return &kgo.Record{Topic: "t", Key: []byte(key), Value: []byte(value)}
	}
	// refusedWithEarlier appends what the appender's next pass takes and
	// checks that a2 was refused, not spooled, and linked again (kgo has
	// not answered it), then lets kgo answer it.
	refusedWithEarlier := func(t *testing.T, s *spooler, g *gate, a2 *gateRec, rest ...*gateRec) {
		t.Helper()
		pass, _ := s.takePass()
		s.appendItems(pass, nil)
		select {
		case <-a2.item.done:
		default:
			t.Fatal("a2 has no outcome after the appender's pass")
		}
		if !errors.Is(a2.item.err, errKeyRefusedBefore) {
			t.Fatalf("a2, after a1 of its key in its request, which was refused: %v, want refused with it", a2.item.err)
		}
		if code, _ := a2.item.refusal(); code != 504 {
			t.Errorf("a2 refused with %d, want 504: kgo may still write it", code)
		}
		if n := s.sp.Stats().Records; n != 0 {
			t.Errorf("the spool holds %d records, want none", n)
		}
		if !a2.linked {
			t.Error("a2 refused while kgo has it, not linked again")
		}
		s.settle(a2)
		for _, n := range rest {
			s.settle(n)
		}
		allAnswered(t, s, g)
	}

	t.Run("held refused at its deadline", func(t *testing.T) {
		s := testSpooler(t, c, nil)
		defer s.close(context.Background())
		g := s.gate("t")
		var s0, a1, a2 gateRec
		g.mu.Lock()
		g.addLocked(&s0, rec("k", "s0"), nil) // spool=0
		g.addLocked(&a1, rec("k", "a1"), g.gen)
		g.addLocked(&a2, rec("k", "a2"), g.gen)
		s.flipLocked(g)
		g.mu.Unlock()
		if !slices.Equal(g.held, []*spoolItem{a1.item, a2.item}) {
			t.Fatalf("held %v, want a1 then a2", g.held)
		}
		g.withdraw(a1.item) // the request's deadline: a1 first
		if code, _ := a1.item.refusal(); !errors.Is(a1.item.err, errHeldPastDeadline) || code != 504 {
			t.Fatalf("a1 at its deadline: %d %v, want 504 held past its deadline", code, a1.item.err)
		}
		s.settle(&s0)
		s.settle(&a1)       // kgo's answer for a1: not written
		g.withdraw(a2.item) // let go by that answer: late, left to the appender
		refusedWithEarlier(t, s, g, &a2)
	})

	t.Run("grouped refused by the spool", func(t *testing.T) {
		s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolMaxBytes = 1 << 20 })
		defer s.close(context.Background())
		g := s.gate("t")
		big := strings.Repeat("v", 600_000) // a1 and y do not fit 1 MiB together
		var a1, y, s1, a2 gateRec
		g.mu.Lock()
		g.addLocked(&a1, rec("k", "a1"+big), g.gen)
		g.addLocked(&y, rec("z", "y"+big), g.gen)
		g.addLocked(&s1, rec("k", "s1"), nil) // spool=0
		g.addLocked(&a2, rec("k", "a2"), g.gen)
		s.flipLocked(g)
		g.mu.Unlock()
		if !slices.Equal(g.held, []*spoolItem{a2.item}) {
			t.Fatalf("held %v, want a2", g.held)
		}
		pass, _ := s.takePass() // the flip's group: a1, y
		s.appendItems(pass, nil)
		if !errors.Is(a1.item.err, spool.ErrFull) {
			t.Fatalf("a1's copy: %v, want refused as full", a1.item.err)
		}
		s.settle(&s1)
		s.settle(&a1) // not written
		refusedWithEarlier(t, s, g, &a2, &y)
	})
}
