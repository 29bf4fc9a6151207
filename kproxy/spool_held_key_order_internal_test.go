package kproxy

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolHeldRecordKeepsKeyOrder attacks per-key order of spooled
// records (202) when the appender holds a record behind one a flip took
// and the spool refused (relinkLocked): a flip takes x (key k) and y (1.2
// MB together, the spool holds 1 MiB); a1 (key k) is queued behind them,
// and the appender's pass takes the three; a2 (key k, after a1 in the
// same request) comes while that pass runs. The spool refuses x and y,
// x is linked again, and a1 is held behind it. Then kgo answers x:
//   - queued: a2 waits in the queue; a1, let go, must be appended before it
//     (it was queued behind a2);
//   - in the pass: the next pass took a2 already; it must wait for a1 (it
//     was appended at once, a1 after it);
//   - arrived later: b (key k, queued before x was linked again) is still
//     in the queue and c (key k) comes while x is linked, held at once;
//     b must be appended before c (c was held before b).
//
// Every record is answered 202 and the drain writes the spool in order.
func TestSpoolHeldRecordKeepsKeyOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, s *spooler, g *gate, x *gateRec) []*spoolItem // the records of key k, in order
	}{
		{"queued", func(t *testing.T, s *spooler, g *gate, x *gateRec) []*spoolItem {
			a1, a2 := heldBehindRefusedFlip(t, s, g)
			s.settle(x)
			appendPass(t, s)
			return []*spoolItem{a1, a2}
		}},
		{"in the pass", func(t *testing.T, s *spooler, g *gate, x *gateRec) []*spoolItem {
			a1, a2 := heldBehindRefusedFlip(t, s, g)
			pass, _ := s.takePass() // a2
			s.settle(x)
			s.appendItems(pass, nil)
			appendPass(t, s)
			return []*spoolItem{a1, a2}
		}},
		{"arrived later", func(t *testing.T, s *spooler, g *gate, x *gateRec) []*spoolItem {
			a1, b := heldBehindRefusedFlip(t, s, g)
			b.after = nil // another request's
			c := newSpoolItem(g, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("c")}, false, time.Time{})
			g.mu.Lock()
			s.holdLocked(g, c) // held behind x at once
			g.mu.Unlock()
			appendPass(t, s) // b: held behind x
			s.settle(x)
			appendPass(t, s)
			return []*spoolItem{a1, b, c}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
			end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code) // the spool keeps its records
			defer end()
			s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolMaxBytes = 1 << 20 })
			defer s.sp.Close()
			g := s.gate("t")
			big := strings.Repeat("v", 600_000) // two of them do not fit 1 MiB
			var x, y gateRec                    // in kgo (not handed to it here: its promise is settle)
			g.mu.Lock()
			g.addLocked(&x, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("x" + big)}, g.gen)
			g.addLocked(&y, &kgo.Record{Topic: "t", Key: []byte("z"), Value: []byte("y" + big)}, g.gen)
			s.flipLocked(g)
			g.mu.Unlock()

			ordered := tc.run(t, s, g, &x)
			s.settle(&y)
			var want []string
			for _, it := range ordered {
				select {
				case <-it.done:
				default:
					t.Fatalf("%s has no outcome", it.rec.Value)
				}
				if it.err != nil {
					t.Fatalf("%s: %v, want spooled (202)", it.rec.Value, it.err)
				}
				want = append(want, string(it.rec.Value))
			}
			es, err := s.sp.ReadTopic("t", 0, math.MaxUint64, 10, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range es {
				got = append(got, string(e.Value))
			}
			if !slices.Equal(got, want) {
				t.Errorf("spool holds key k as %v, want %v: the drain would write a later record of the key first", got, want)
			}
			allAnswered(t, s, g)
		})
	}
}

// heldBehindRefusedFlip runs the appender's pass over the flip's records
// (x and y, already queued) and a1 (key k, queued behind them), while a2
// (key k, after a1 in its request) is queued: the spool refuses the flip's
// records, and a1 is held behind x, linked again.
func heldBehindRefusedFlip(t *testing.T, s *spooler, g *gate) (a1, a2 *spoolItem) {
	t.Helper()
	a1 = newSpoolItem(g, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("a1")}, false, time.Time{})
	g.mu.Lock()
	s.holdLocked(g, a1) // x is the flip's: queued
	g.mu.Unlock()
	pass, _ := s.takePass()
	a2 = newSpoolItem(g, &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("a2")}, false, time.Time{})
	a2.after = a1 // one request's records of key k (gateBatchRecord)
	g.mu.Lock()
	s.holdLocked(g, a2) // x is not linked again yet: queued
	g.mu.Unlock()
	s.appendItems(pass, nil)
	g.mu.Lock()
	held := slices.Clone(g.held)
	g.mu.Unlock()
	if len(held) != 1 || held[0] != a1 {
		t.Fatalf("held %d records, want a1 alone (behind x, refused by the spool)", len(held))
	}
	return a1, a2
}

// appendPass runs one pass of the appender, as write does.
func appendPass(t *testing.T, s *spooler) {
	t.Helper()
	pass, _ := s.takePass()
	if len(pass) == 0 {
		t.Fatal("nothing queued for the appender")
	}
	s.appendItems(pass, nil)
}
