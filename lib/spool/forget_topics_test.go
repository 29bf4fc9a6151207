package spool_test

import (
	"fmt"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestDrainedSpoolForgetsTopicNames: the spool kept every topic name it
// ever took, for the life of the process, after their entries were all
// acked and their segments removed: memory growing with each distinct
// topic spooled (a topic per tenant, per day). Once the spool holds no
// segment, it forgets them; a name spooled again is taken anew, and its
// entries read and acked as before.
func TestDrainedSpoolForgetsTopicNames(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir, SegmentBytes: 4096})
	const n = 500
	for i := range n {
		appendOne(t, s, rec(fmt.Sprintf("tenant-%d", i), "v"))
	}
	if got := spool.KnownTopics(s); got != n {
		t.Fatalf("%d topic names known after %d topics spooled, want %d", got, n, n)
	}
	for _, e := range readN(t, s, n) {
		s.Ack(e.Seq)
	}
	waitFor(t, "the drained segments' removal", func() bool { return len(segmentsIn(dir)) == 0 })
	waitFor(t, "the topic names forgotten", func() bool { return spool.KnownTopics(s) == 0 })

	// A topic spooled again after it was forgotten.
	seq := appendOne(t, s, rec("tenant-7", "again"))
	if p, unsaved := s.TopicState("tenant-7"); p != 1 || unsaved {
		t.Fatalf("tenant-7 spooled again: pending %d, unsaved %v; want 1, false", p, unsaved)
	}
	es := readN(t, s, 1)
	if es[0].Seq != seq || es[0].Topic != "tenant-7" || string(es[0].Value) != "again" {
		t.Fatalf("read %+v, want seq %d of tenant-7 \"again\"", es[0], seq)
	}
	s.Ack(es[0].Seq)
	waitFor(t, "tenant-7 acked", func() bool { p, _ := s.TopicState("tenant-7"); return p == 0 })
}
