package kproxy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSpoolRefusedTakenRecordAnsweredByKafkaStaysUnlinked attacks the
// promise that a topic goes to Kafka directly again once nothing of it is
// in kgo, waiting, or in the spool, and that a pooled request's memory is
// never linked in a gate once its owner let it go.
//
// A flip (another record's spool_after_ms) takes p1 and x, both still in
// kgo, into the spool as one group. kgo answers p1 before the appender
// runs (the cancelled generation fails it, or a slow broker writes it), and
// p1's memory goes back to its pool (a /commit handler woken by the
// promise, or a batch job whose records were all answered), zeroed. The
// spool, full, then refuses the group. Only x, which kgo still has, may
// be linked in the gate again; linking p1's zeroed memory kept the topic
// spooling for good (the gate counted a record in kgo that no promise
// would take off) and, once the pool handed the memory to a request of
// another topic, put that request in both gates' lists.
func TestSpoolRefusedTakenRecordAnsweredByKafkaStaysUnlinked(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code) // the drain frees nothing
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolMaxBytes = 1 << 20 })
	g := s.gate("t")
	big := strings.Repeat("v", 600_000) // two of them do not fit 1 MiB

	p1 := pendingPool.Get().(*pending)
	p1.rec = kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("p1" + big), Context: p1}
	var x gateRec // in kgo (not handed to it here: its promise is settle below)
	xRec := &kgo.Record{Topic: "t", Key: []byte("x"), Value: []byte("x" + big)}
	g.mu.Lock()
	g.addLocked(&p1.gateRec, &p1.rec, g.gen)
	g.addLocked(&x, xRec, g.gen)
	s.flipLocked(g)
	g.mu.Unlock()
	item := p1.item

	if taken := s.settle(&p1.gateRec); !taken { // kgo's answer for p1
		t.Fatal("p1, taken by the flip, not settled as taken")
	}
	p1.release() // its owner lets it go; the pool may hand it out again

	s.start()
	defer func() {
		end()
		s.close(context.Background())
	}()
	<-item.done
	if !errors.Is(item.err, spool.ErrFull) {
		t.Fatalf("p1's copy: %v, want refused as full", item.err)
	}
	if n := s.relinked.Load(); n != 1 {
		t.Errorf("relinked %d after the spool refused the group, want 1 (x, which kgo still has)", n)
	}
	if taken := s.settle(&x); taken { // kgo's answer for x
		t.Error("x, refused by the spool and linked again, settled as taken")
	}

	g.mu.Lock()
	out, first, direct := g.out, g.first, s.directLocked(g)
	g.mu.Unlock()
	if out != 0 || first != nil || !direct || s.relinked.Load() != 0 {
		t.Errorf("kgo answered every record of t and the spool holds none: gate out=%d (want 0), list empty=%v, "+
			"direct=%v (want true), relinked=%d (want 0); p1's released memory is linked in the gate (%v)",
			out, first == nil, direct, s.relinked.Load(), first == &p1.gateRec)
	}
}
