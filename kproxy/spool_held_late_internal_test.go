package kproxy

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSpoolLateRecordRefusedNotHeld attacks the bound on a record's wait
// behind a record of its key that kgo has (TestSpoolHeldBehindKeyAnsweredByDeadline
// covers a record held when it arrives): here the record is queued for the
// appender when its request stops waiting, and only then would the
// appender hold it (behind a1, which a flip took and the spool refused
// while kgo has it). It must be refused (503, never written), not held
// without a waiter; and the later record of its key in its request (b2,
// not late) is refused with it, even though kgo answers a1 and b2 is no
// longer held back, lest b2 reach Kafka without b1.
func TestSpoolLateRecordRefusedNotHeld(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code) // the drain frees nothing
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolMaxBytes = 1 << 20 })
	g := s.gate("t")
	big := strings.Repeat("v", 600_000) // two of them do not fit 1 MiB
	var a1, x gateRec                   // in kgo (not handed to it here: its promise is settle below)
	a1Rec := &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("a1" + big)}
	xRec := &kgo.Record{Topic: "t", Key: []byte("x"), Value: []byte("x" + big)}
	g.mu.Lock()
	g.addLocked(&a1, a1Rec, g.gen)
	g.addLocked(&x, xRec, g.gen)
	s.flipLocked(g)
	b1 := newSpoolItem(g, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("b1")}, false, time.Time{})
	b2 := newSpoolItem(g, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("b2")}, false, time.Time{})
	b2.after = b1 // one request's records of key k
	s.holdLocked(g, b1)
	s.holdLocked(g, b2)
	g.mu.Unlock()
	g.withdraw(b1) // its deadline passed: queued, not held
	select {
	case <-b1.done:
		t.Fatalf("b1, queued for the appender, refused at once (%v): the appender may be writing it", b1.err)
	default:
	}

	s.start()
	defer func() {
		end()
		s.close(context.Background())
	}()
	select {
	case <-b1.done:
	case <-time.After(10 * time.Second):
		t.Fatal("b1, whose request stopped waiting, held behind a1 with no bound")
	}
	if !errors.Is(b1.err, errHeldPastDeadline) {
		t.Errorf("b1: %v, want refused as held past its deadline", b1.err)
	}
	if code, _ := b1.refusal(); code != 503 {
		t.Errorf("b1 answered %d, want 503 (not written)", code)
	}
	if !errors.Is(a1.item.err, spool.ErrFull) {
		t.Fatalf("a1's copy: %v, want refused as full", a1.item.err)
	}
	s.settle(&a1) // kgo answers a1: what was held for it is queued
	select {
	case <-b2.done:
		if !errors.Is(b2.err, errKeyRefusedBefore) {
			t.Errorf("b2, after b1 of its key in its request, refused as late: %v, want refused with it", b2.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b2 has no outcome after kgo answered a1")
	}
	s.settle(&x)
	allAnswered(t, s, g)
}

// TestSpoolLateRecordRefusedInPassRefusesLaterOfKey attacks the same
// promise within one pass of the appender: b1 and b2 (key k, one
// request's) are queued behind x (key k) and y, which a flip took; b1's
// request stopped waiting. The spool refuses x and y (full), x is linked
// again, and the appender refuses b1 (late, it would be held behind x).
// kgo answers x before the appender reaches b2 in the same pass: b2 is no
// longer held back, but must be refused with b1, never appended without
// it. The appender is stopped between the two on w, a record of another
// topic whose gate the test holds.
func TestSpoolLateRecordRefusedInPassRefusesLaterOfKey(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code) // the spool keeps its records
	defer end()
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolMaxBytes = 1 << 20 })
	defer s.sp.Close()
	g, g2 := s.gate("t"), s.gate("t2")
	big := strings.Repeat("v", 600_000) // two of them do not fit 1 MiB
	var x, y gateRec                    // in kgo (not handed to it here: its promise is settle below)
	g.mu.Lock()
	g.addLocked(&x, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("x" + big)}, g.gen)
	g.addLocked(&y, &kgo.Record{Topic: "t", Key: []byte("z"), Value: []byte("y" + big)}, g.gen)
	s.flipLocked(g)
	b1 := newSpoolItem(g, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("b1")}, false, time.Time{})
	b2 := newSpoolItem(g, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("b2")}, false, time.Time{})
	b2.after = b1 // one request's records of key k
	s.holdLocked(g, b1)
	g.mu.Unlock()
	w := newSpoolItem(g2, &kgo.Record{Topic: "t2", Value: []byte("w")}, false, time.Time{})
	g2.mu.Lock()
	g2.spooling = true
	s.holdLocked(g2, w)
	g2.mu.Unlock()
	g.mu.Lock()
	s.holdLocked(g, b2)
	g.mu.Unlock()
	g.withdraw(b1) // its deadline passed: queued, not held

	pass, _ := s.takePass() // x, y, b1, w, b2
	g2.mu.Lock()            // the appender waits on w, past b1
	passed := make(chan struct{})
	go func() {
		defer close(passed)
		s.appendItems(pass, nil)
	}()
	select {
	case <-b1.done:
	case <-time.After(10 * time.Second):
		g2.mu.Unlock()
		t.Fatal("b1, late and behind x, has no outcome")
	}
	s.settle(&x) // kgo answers x while the appender is between b1 and b2
	g2.mu.Unlock()
	<-passed
	if !errors.Is(b1.err, errHeldPastDeadline) {
		t.Errorf("b1: %v, want refused as held past its deadline", b1.err)
	}
	if !errors.Is(b2.err, errKeyRefusedBefore) {
		t.Errorf("b2, after b1 of its key in its request: %v, want refused with it (b1 is not written)", b2.err)
	}
	if w.err != nil {
		t.Errorf("w: %v, want spooled", w.err)
	}
	s.settle(&y)
	allAnswered(t, s, g)
}

// allAnswered checks that every record of g has its outcome: nothing
// queued, held, in kgo or being released.
func allAnswered(t *testing.T, s *spooler, g *gate) {
	t.Helper()
	g.mu.Lock()
	queued, held, out := g.queued, len(g.held), g.out
	g.mu.Unlock()
	if queued != 0 || held != 0 || out != 0 || s.relinked.Load() != 0 || s.releasing.Load() != 0 {
		t.Errorf("every record has its outcome: gate queued=%d held=%d out=%d, relinked=%d releasing=%d, want all 0",
			queued, held, out, s.relinked.Load(), s.releasing.Load())
	}
}
