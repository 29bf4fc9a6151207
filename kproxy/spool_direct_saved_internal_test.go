package kproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	awaitDrainedUnsaved(t, s, "b")
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

// TestSpoolHungFloorSaveHoldsNoOtherSave: a floor save that waits for the
// disk past saveTopicWait (a disk that hangs) lets its topic go direct;
// while it still waits, no other topic's save starts: each one started a
// goroutine that waited behind it for ever (one more per topic and retry
// while the disk hung), and held the topic's gate 1 s at every retry. The
// topics that go direct unsaved meanwhile are each named in the log
// (before, only the one whose save was given up on). Once the late save
// ends well, the disk answers again: the next topic's floor is saved at
// its next record, not 10 s later, when a crash meanwhile would have
// replayed its acknowledged records after newer ones.
func TestSpoolHungFloorSaveHoldsNoOtherSave(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "b1", Partitions: 1}, {Name: "b2", Partitions: 1}, {Name: "b3", Partitions: 1}})
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolAfterMs = 200 })
	var logged bytes.Buffer
	var logMu sync.Mutex
	s.log = slog.New(slog.NewTextHandler(&lockedWriter{w: &logged, mu: &logMu}, nil))
	hang := make(chan struct{})
	var saves atomic.Int32
	s.saveFloor = func(topic string) error {
		saves.Add(1)
		<-hang // the disk does not answer
		return s.sp.SaveTopic(topic)
	}
	if _, err := s.sp.Append([]spool.Record{{Topic: "unknown-topic", Value: []byte("held")}, {Topic: "b1", Value: []byte("1")}, {Topic: "b2", Value: []byte("2")}, {Topic: "b3", Value: []byte("3")}}); err != nil {
		t.Fatal(err)
	}
	s.start()
	defer s.close(context.Background())
	awaitDrainedUnsaved(t, s, "b1", "b2", "b3")
	direct := func(topic string) (bool, time.Duration) {
		g := s.lockGate(topic)
		defer g.mu.Unlock()
		start := time.Now()
		return s.directLocked(g), time.Since(start)
	}
	if ok, took := direct("b1"); !ok || took < saveTopicWait {
		t.Fatalf("b1, its save hung: direct %v after %v; want direct after %v", ok, took, saveTopicWait)
	}
	s.saveRetryAt.Store(0) // as after saveTopicRetry, the save still hung
	// Each one's next record too.
	for _, topic := range []string{"b2", "b3", "b2", "b3"} {
		if ok, took := direct(topic); !ok || took > saveTopicWait/2 {
			t.Errorf("%s, while b1's save hangs: direct %v after %v; want direct at once", topic, ok, took)
		}
	}
	if n := saves.Load(); n != 1 {
		t.Errorf("%d floor saves started while the first one hung, want 1 (each waits behind it for ever)", n)
	}
	logMu.Lock()
	for _, topic := range []string{"b2", "b3"} {
		if n := strings.Count(logged.String(), "topic="+topic+"\n"); n != 1 {
			t.Errorf("%s went direct unsaved at two records, named %d times in the log, want once:\n%s", topic, n, logged.String())
		}
	}
	logMu.Unlock()
	close(hang) // the disk answers: b1's floor is saved
	for deadline := time.Now().Add(5 * time.Second); ; {
		if _, unsaved := s.sp.TopicState("b1"); !unsaved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b1's late save never ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, topic := range []string{"b2", "b3"} {
		// Its next records save it (gone direct unsaved, the save is not
		// waited for: see TestSpoolFloorSaveRetryNotUnderRecordsInKafka).
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if ok, _ := direct(topic); !ok {
				t.Fatalf("%s not direct", topic)
			}
			if _, unsaved := s.sp.TopicState(topic); !unsaved {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's floor not saved after its next record, the disk answering again", topic)
			}
		}
	}
}

// lockedWriter serializes the writes of a log shared with the test.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestSpoolFloorSaveRetryNotUnderRecordsInKafka: a topic gone direct with
// its floor unsaved (a save that failed) tries the save again, after
// saveTopicRetry, at its next record, under its gate's lock, and waited
// for the disk up to saveTopicWait. With records of the topic in Kafka's
// client, their answers wait for that lock (settle), and behind them every
// answer of the client, every topic's: on a slow disk, a second of no
// answers, enough for other topics to reach spool_after_ms and spool
// records Kafka had written. The topic's records go direct already: the
// save is tried again without being waited for, and no other starts
// meanwhile.
func TestSpoolFloorSaveRetryNotUnderRecordsInKafka(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "b", Partitions: 1}})
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolAfterMs = 200 })
	fail := errors.New("disk refuses")
	var saves atomic.Int32
	slow := make(chan struct{})
	s.saveFloor = func(topic string) error {
		if saves.Add(1) == 1 {
			return fail // the first: b goes direct unsaved
		}
		<-slow
		return s.sp.SaveTopic(topic)
	}
	if _, err := s.sp.Append([]spool.Record{{Topic: "unknown-topic", Value: []byte("held")}, {Topic: "b", Value: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	s.start()
	defer s.close(context.Background())
	awaitDrainedUnsaved(t, s, "b")
	g := s.lockGate("b")
	if !s.directLocked(g) {
		g.mu.Unlock()
		t.Fatal("b not direct after its failed save")
	}
	g.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); saves.Load() < 1 || s.lateSaves.Load() > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b's first save never ended")
		}
	}
	s.saveRetryAt.Store(0) // saveTopicRetry passed

	for range 3 { // b's next records, one of b in Kafka's client each time
		g = s.lockGate("b")
		g.out++
		start := time.Now()
		direct := s.directLocked(g)
		took := time.Since(start)
		g.out--
		g.mu.Unlock()
		if !direct || took > saveTopicWait/2 {
			t.Errorf("b's next record, one of b in Kafka's client: direct %v after %v under b's gate; want direct at once", direct, took)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); saves.Load() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("b's save never tried again")
		}
	}
	time.Sleep(50 * time.Millisecond)
	if n := saves.Load(); n != 2 {
		t.Errorf("%d saves, want 2: the failed one, and one tried again while the others wait for it", n)
	}
	close(slow) // the disk answers: b's floor is saved
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if _, unsaved := s.sp.TopicState("b"); !unsaved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b's floor not saved once the disk answered")
		}
	}
}

// awaitDrainedUnsaved waits until each topic has nothing in the spool and
// its acknowledgements are not saved (a topic drained while an older
// record of another waits), 20 s at most.
func awaitDrainedUnsaved(t *testing.T, s *spooler, topics ...string) {
	t.Helper()
	for _, topic := range topics {
		for deadline := time.Now().Add(20 * time.Second); ; {
			if p, unsaved := s.sp.TopicState(topic); p == 0 && unsaved {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never drained", topic)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
