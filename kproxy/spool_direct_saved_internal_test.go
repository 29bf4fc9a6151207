package kproxy

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSpoolTopicGoesDirectOnlyWithItsAcksSaved: a topic's records go to
// Kafka directly again once the drain has Kafka's acknowledgement of its
// spooled ones (DESIGN: while a topic has spooled records, its new records
// go to the spool too; per-key order holds; at-least-once across a crash).
// Those acknowledgements must be on disk by then: were the process killed
// right after, the next start would replay the topic's acknowledged
// records, and drain them after the newer ones that went to Kafka
// directly: an old value of a key written after its new one (on a
// compacted topic, the key's value goes back). Here topic "b" is drained
// while an older record of a topic Kafka does not know holds the spool's
// watermark at 0: the acks of b lived in memory only (the watermark moves
// only past a run of acks without a gap, the acks above it were written at
// Close only), and a crash image taken when b went direct replayed all of b.
func TestSpoolTopicGoesDirectOnlyWithItsAcksSaved(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "b", Partitions: 1}})
	var dir string
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolAfterMs, dir = 200, cfg.SpoolDir })
	if _, err := s.sp.Append([]spool.Record{{Topic: "unknown-topic", Key: []byte("k"), Value: []byte("held")}}); err != nil {
		t.Fatal(err)
	}
	const n = 10
	for i := range n {
		if _, err := s.sp.Append([]spool.Record{{Topic: "b", Key: []byte("k"), Value: []byte{'0' + byte(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	s.start()
	defer s.close(context.Background())
	for deadline := time.Now().Add(20 * time.Second); ; {
		g := s.lockGate("b")
		direct := s.directLocked(g)
		if direct {
			// Killed here: the spool's files as they are now.
			image := filepath.Join(t.TempDir(), "image")
			out, err := exec.Command("cp", "-a", dir, image).CombinedOutput()
			g.mu.Unlock()
			if err != nil {
				t.Fatalf("copy the spool: %v %s", err, out)
			}
			sp, err := spool.Open(spool.Options{Dir: image})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			if p := sp.Pending("b"); p != 0 {
				t.Fatalf("b went to Kafka directly while a crash then would replay %d of its %d records Kafka acknowledged (after any newer record of their keys)", p, n)
			}
			if p := sp.Pending("unknown-topic"); p != 1 {
				t.Fatalf("the record Kafka did not take: %d pending after the crash, want 1", p)
			}
			return
		}
		g.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("b never went direct: %d pending", s.sp.Pending("b"))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
