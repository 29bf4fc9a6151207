package kproxy

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSpoolDrainAnsweredNotAckedNotReadBack: topic T's records 0..3 are in a chunk
// set aside (T parked aside); Kafka refuses 0 and 2 (partition 0) and, the
// parked budget being full, they go to the spool only (diskFrom = 0). Later
// partition 1 heals: 1 and 3 are acknowledged by Kafka. awaitAside's tick
// runs ackDrained() just before their promises, then takes s.dmu and sees
// every record of T answered: T is unparked (retrying) and the drain
// woken. fillParked reads T back from the spool before anything acks 1
// and 3 (s.acks holds them): they are fed and written a second time,
// uncounted.
func TestSpoolDrainAnsweredNotAckedNotReadBack(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "T", Partitions: 2}})
	s := testSpooler(t, c, nil)
	defer s.close(context.Background())
	s.parkBudget = 1 // full: refused records go to the spool only
	var rs []spool.Record
	for i := range 4 {
		rs = append(rs, spool.Record{Topic: "T", Key: []byte{byte('a' + i%2)}, Value: []byte{byte('0' + i)}})
	}
	if _, err := s.sp.Append(rs); err != nil {
		t.Fatal(err)
	}
	es, err := s.sp.Read(context.Background(), 4)
	if err != nil || len(es) != 4 {
		t.Fatalf("read %d, %v", len(es), err)
	}
	a := &asideChunk{chunk: make([]drainRec, 4), wait: &chunkWait{}}
	a.wait.n.Store(4)
	for i := range a.chunk {
		d := &a.chunk[i]
		d.e = es[i]
		d.rec.Context, d.wait = d, a.wait
	}
	s.dmu.Lock()
	s.readTo = es[3].Seq + 1
	s.parkAsideLocked(a) // T parked aside
	s.dmu.Unlock()
	// partition 0 refused
	s.drained(&a.chunk[0].rec, kerr.TopicAuthorizationFailed)
	s.drained(&a.chunk[2].rec, kerr.TopicAuthorizationFailed)
	time.Sleep(1200 * time.Millisecond) // T's pause over while aside
	// awaitAside's tick: ackDrained first ...
	s.ackDrained()
	// ... then partition 1's answers come ...
	s.drained(&a.chunk[1].rec, nil)
	s.drained(&a.chunk[3].rec, nil)
	// ... then unparkAsideLocked under s.dmu, and wakeLocked.
	s.dmu.Lock()
	s.unparkAsideLocked(a)
	p := s.parked["T"]
	s.dmu.Unlock()
	if p == nil || !p.retrying {
		t.Fatalf("T not retrying: %+v", p)
	}
	// Another parked topic that held the budget when 0 and 2 were refused
	// has drained since: the budget has room again.
	s.dmu.Lock()
	s.parkBudget = maxParkedBytes
	s.dmu.Unlock()
	// The drain loop's next round.
	s.refreshParked()
	if err := s.fillParked(); err != nil {
		t.Fatal(err)
	}
	s.dmu.Lock()
	fed, _, _ := s.feedLocked(nil)
	s.dmu.Unlock()
	t.Logf("p %+v fed %d", p, len(fed))
	for _, e := range fed {
		if e.Seq == es[1].Seq || e.Seq == es[3].Seq {
			t.Errorf("fed seq %d again, which Kafka acknowledged (its ack only in s.acks): a duplicate, not counted", e.Seq)
		}
	}
}
