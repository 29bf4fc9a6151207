package kproxy

import (
	"context"
	"os"
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

// TestSpoolTopicGoesDirectWhenItsFloorCannotBeSaved: a floor the disk
// refuses (here topic-floors.tmp is a directory) does not keep the topic
// in the spool, which could not take its records either: it goes to
// Kafka directly, and the save is not tried again at each record (under
// the gate's lock) but after saveTopicRetry.
func TestSpoolTopicGoesDirectWhenItsFloorCannotBeSaved(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "b", Partitions: 1}})
	var dir string
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolAfterMs, dir = 200, cfg.SpoolDir })
	if err := os.Mkdir(filepath.Join(dir, "topic-floors.tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.sp.Append([]spool.Record{{Topic: "unknown-topic", Value: []byte("held")}, {Topic: "b", Value: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	s.start()
	defer s.close(context.Background())
	for deadline := time.Now().Add(20 * time.Second); ; {
		if p, unsaved := s.sp.TopicState("b"); p == 0 && unsaved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never drained")
		}
		time.Sleep(5 * time.Millisecond)
	}
	g := s.lockGate("b")
	start := time.Now()
	direct := s.directLocked(g)
	g.mu.Unlock()
	if !direct || time.Since(start) > saveTopicWait {
		t.Fatalf("drained, its floor refused by the disk: direct %v after %v; want direct at once", direct, time.Since(start))
	}
	if at := time.Unix(0, s.saveRetryAt.Load()); time.Until(at) < saveTopicRetry/2 {
		t.Errorf("the failed save is tried again at %v, within %v: at every record", at, time.Until(at))
	}
	if _, unsaved := s.sp.TopicState("b"); !unsaved {
		t.Errorf("b's acks reported saved after the save failed")
	}
}
