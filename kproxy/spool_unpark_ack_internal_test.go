package kproxy

import (
	"context"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSpoolFillParkedAfterUnparkReadsNoAcknowledgedRecord: topic a's records s0 and s1 are in a
// chunk set aside; Kafka refused s0 (parked, left in the spool only:
// diskFrom s0, as reparkLocked's trim leaves it), s1 is still out. The
// drain's fillParked has just acked what Kafka acknowledged (ackDrained)
// when s1's promise runs (its seq into s.acks, then answered) and the
// aside goroutine's tick unparks a (unparkAsideLocked: retrying) before
// fillParked takes s.dmu. fillParked then reads a back from the spool
// from s0: s1, acknowledged by Kafka, is read back as not acked and would
// be produced a second time.
func TestSpoolFillParkedAfterUnparkReadsNoAcknowledgedRecord(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 2}})
	s := testSpooler(t, c, nil)
	defer s.close(context.Background())
	defer func() { s.dmu.Lock(); s.aside = nil; s.dmu.Unlock() }() // a has no client
	first, err := s.sp.Append([]spool.Record{
		{Topic: "a", Key: []byte("k0"), Value: []byte("s0")},
		{Topic: "a", Key: []byte("k1"), Value: []byte("s1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	s0, s1 := first, first+1
	es, err := s.sp.Read(context.Background(), 2)
	if err != nil || len(es) != 2 {
		t.Fatalf("read %d entries, %v", len(es), err)
	}
	s.dmu.Lock()
	s.readTo = s1 + 1
	a := &asideChunk{chunk: make([]drainRec, 2), topics: map[string]bool{"a": true}}
	a.chunk[0].fill(es[0])
	a.chunk[0].answered.Store(true) // refused: parked below
	a.chunk[1].fill(es[1])          // out, not answered yet
	s.aside = append(s.aside, a)
	s.parked["a"] = &parkedTopic{topic: "a", aside: true, disk: true, diskFrom: s0}
	// s.dmu stays held: fillParked acks (nothing yet) and waits for it.
	filled := make(chan error, 1)
	go func() { filled <- s.fillParked() }()
	time.Sleep(200 * time.Millisecond) // fillParked is past ackDrained, waiting for s.dmu
	// s1's promise (drained, err nil): its seq into s.acks, then answered.
	s.amu.Lock()
	s.acks = append(s.acks, s1)
	s.amu.Unlock()
	a.chunk[1].answered.Store(true)
	// The aside goroutine's tick (its ackDrained ran before the promise).
	s.unparkAsideLocked(a)
	s.dmu.Unlock()
	if err := <-filled; err != nil {
		t.Fatal(err)
	}
	s.dmu.Lock()
	defer s.dmu.Unlock()
	p := s.parked["a"]
	for _, e := range p.entries {
		if e.Seq == s1 {
			t.Fatalf("a's seq %d, which Kafka acknowledged (in s.acks), was read back from the spool to be produced again: parked entries %v",
				s1, entrySeqs(p.entries))
		}
	}
}

func entrySeqs(es []spool.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}
