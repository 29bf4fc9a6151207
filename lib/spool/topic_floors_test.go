package spool_test

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSaveTopicSurvivesACrash: once every entry of a topic is acked and
// SaveTopic returned, a crash (no Close) does not bring them back, though
// an older entry of another topic holds the watermark: kproxy sends the
// topic's new records to Kafka directly from then on, and a replay of the
// old ones would write them after the new ones. Entries of the topic
// appended after the save are replayed as any others: a floor covers only
// what was acked when it was written. Without the save, a crash replays
// the acked entries (TopicState says so).
func TestSaveTopicSurvivesACrash(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	held := appendOne(t, s, rec("parked", "p0"))
	var ts []uint64
	for _, v := range []string{"a", "b", "c"} {
		ts = append(ts, appendOne(t, s, rec("t", v)))
	}
	readN(t, s, 4)
	s.Ack(ts...)
	if p, unsaved := s.TopicState("t"); p != 0 || !unsaved {
		t.Fatalf("t drained behind an unacked entry: TopicState %d, %v; want 0, true (a crash would replay it)", p, unsaved)
	}
	if got := pendingAfterCrash(t, dir, "t"); got != 3 {
		t.Fatalf("the test's premise: a crash before SaveTopic replays %d of t's 3 acked entries, want 3", got)
	}
	if err := s.SaveTopic("t"); err != nil {
		t.Fatal(err)
	}
	if p, unsaved := s.TopicState("t"); p != 0 || unsaved {
		t.Fatalf("after SaveTopic: TopicState %d, %v; want 0, false", p, unsaved)
	}
	if got := pendingAfterCrash(t, dir, "t"); got != 0 {
		t.Errorf("after SaveTopic, a crash replays %d of t's acked entries, want 0", got)
	}
	if got := pendingAfterCrash(t, dir, "parked"); got != 1 {
		t.Errorf("the other topic's unacked entry after a crash: %d pending, want 1", got)
	}

	// t spools again: its new entries are not covered by the floor.
	d := appendOne(t, s, rec("t", "d"))
	if d <= held || d <= ts[2] {
		t.Fatalf("seq %d of a later entry not after %d", d, ts[2])
	}
	snap := crashCopy(t, dir)
	s2 := open(t, spool.Options{Dir: snap})
	if got := s2.Pending("t"); got != 1 {
		t.Errorf("t's entry appended after the save: %d pending after a crash, want 1", got)
	}
	if got, want := values(readN(t, s2, 2)), []string{"p0", "d"}; !slices.Equal(got, want) {
		t.Errorf("replayed after a crash: %q, want %q", got, want)
	}
	readNone(t, s2)
	// Seqs below the floor are never another entry's, whatever the
	// watermark says: the restarted spool appends after it.
	if q := appendOne(t, s2, rec("t", "e")); q <= d {
		t.Errorf("seq %d appended after a restart, not after %d", q, d)
	}
}

// pendingAfterCrash opens a crash image of dir and returns topic's pending.
func pendingAfterCrash(t *testing.T, dir, topic string) int {
	t.Helper()
	s := open(t, spool.Options{Dir: crashCopy(t, dir)})
	defer s.Close()
	return s.Pending(topic)
}

// TestSaveTopicWithPendingEntriesSavesNothing: a floor says every entry
// of the topic below it is acked; with one not acked, SaveTopic writes
// none, and a crash replays everything not under the watermark.
func TestSaveTopicWithPendingEntriesSavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	appendOne(t, s, rec("parked", "p0"))
	a := appendOne(t, s, rec("t", "a"))
	appendOne(t, s, rec("t", "b"))
	readN(t, s, 3)
	s.Ack(a)
	if err := s.SaveTopic("t"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "topic-floors")); !os.IsNotExist(err) {
		t.Errorf("topic-floors written for a topic with an entry not acked (stat: %v)", err)
	}
	if got := pendingAfterCrash(t, dir, "t"); got != 2 {
		t.Errorf("t after a crash: %d pending, want 2 (its acked entry above the watermark too)", got)
	}
}

// TestUnreadableTopicFloorsReplays: a topic-floors file that fails its
// checksum is logged and left unused (the acked entries come again:
// duplicates, nothing lost); a temporary file left by a write cut short is
// removed without a warning about an unknown file.
func TestUnreadableTopicFloorsReplays(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	appendOne(t, s, rec("parked", "p0"))
	a := appendOne(t, s, rec("t", "a"))
	readN(t, s, 2)
	s.Ack(a)
	if err := s.SaveTopic("t"); err != nil {
		t.Fatal(err)
	}
	snap := crashCopy(t, dir)
	path := filepath.Join(snap, "topic-floors")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(snap, "topic-floors.tmp"), []byte("cut"), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	s2 := open(t, spool.Options{Dir: snap, Log: slog.New(slog.NewTextHandler(&log, nil))})
	if got := s2.Pending("t"); got != 1 {
		t.Errorf("t with its floors unreadable: %d pending, want 1 (replayed)", got)
	}
	if !strings.Contains(log.String(), "topic floors unreadable") {
		t.Errorf("unreadable topic-floors not logged: %s", log.String())
	}
	if strings.Contains(log.String(), "unknown file") {
		t.Errorf("the temporary file of topic-floors warned about as unknown: %s", log.String())
	}
	if _, err := os.Stat(filepath.Join(snap, "topic-floors.tmp")); !os.IsNotExist(err) {
		t.Errorf("the temporary file of topic-floors left (stat: %v)", err)
	}
}

// TestTopicFloorsReadErrorFailsTheStart: topic-floors there but not
// readable (an I/O error; here a directory in its place) fails Open,
// naming the file, as an unreadable watermark does. Before, the start went
// on without the floors: the seqs below a floor went to new entries, and
// a later start that read the file took them for acked, never drained.
func TestTopicFloorsReadErrorFailsTheStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "topic-floors"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := spool.Open(spool.Options{Dir: dir})
	if err == nil {
		s.Close()
		t.Fatal("Open went on with topic-floors unreadable")
	}
	if !strings.Contains(err.Error(), filepath.Join(dir, "topic-floors")) {
		t.Errorf("Open's error does not name topic-floors: %v", err)
	}
}

// TestAckedRangesAreUnsavedAfterARestart: acked-ranges holds only while
// the watermark on disk is the one it was written with. A topic whose
// acks came back from it at the start is unsaved (TopicState): kproxy
// saves its floor before its records go direct. Else, once the watermark
// moved (an older record of another topic acked), a crash replayed the
// topic's acked records after the newer ones sent to Kafka directly.
func TestAckedRangesAreUnsavedAfterARestart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	var seqs []uint64
	for _, r := range []spool.Record{rec("parked", "p0"), rec("t", "a"), rec("t", "b"), rec("parked", "p1"), rec("t", "c")} {
		seqs = append(seqs, appendOne(t, s, r))
	}
	readN(t, s, len(seqs))
	s.Ack(seqs[1], seqs[2], seqs[4]) // t drained, no record of it since: no floor
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, spool.Options{Dir: dir})
	if p, unsaved := s.TopicState("t"); p != 0 || !unsaved {
		t.Fatalf("after a clean restart, t's acks in acked-ranges only: TopicState %d, %v; want 0, true", p, unsaved)
	}
	if err := s.SaveTopic("t"); err != nil { // as kproxy does before t's first direct record
		t.Fatal(err)
	}
	appendOne(t, s, rec("parked", "p2"))
	readN(t, s, 2)
	s.Ack(seqs[0]) // the watermark moves to p1: acked-ranges is stale from here
	var snap string
	waitFor(t, "watermark at p1", func() bool {
		snap = crashCopy(t, dir)
		b, err := os.ReadFile(filepath.Join(snap, "acked"))
		return err == nil && len(b) >= 8 && binary.LittleEndian.Uint64(b) == seqs[3]
	})
	c := open(t, spool.Options{Dir: snap})
	if got := c.Pending("t"); got != 0 {
		t.Errorf("t saved before it went direct, yet a crash replays %d of its acked records", got)
	}
}
