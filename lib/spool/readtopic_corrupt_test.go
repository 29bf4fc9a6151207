package spool_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// A corrupt length header in an entry of another topic, met while
// ReadTopic skips to topic a's next entry, cuts a's entries from there on
// only: seq 0 (a), read before the corrupt entry 1 (b), is returned, and
// stays pending for the caller to produce and ack; seq 2 (a) is cut.
func TestReadTopicSkipCorruptKeepsEarlierEntries(t *testing.T) {
	size := entrySize(t, rec("a", "00"))
	dir := t.TempDir()
	var log logBuffer
	s := open(t, spool.Options{Dir: dir, Log: log.logger()})
	for i, tp := range []string{"a", "b", "a"} {
		appendOne(t, s, rec(tp, fmt.Sprintf("%02d", i)))
	}
	readN(t, s, 3) // Read passed them all (the drain left a in the spool)
	segs := segmentsIn(dir)
	flip(t, segs[0], 1*size+3) // entry 1 (b): its length's high byte, past the largest payload
	if got, want := topicValues(t, s, "a", 0, 3, 100, 1<<20), []string{"0:00"}; !slices.Equal(got, want) {
		t.Fatalf("ReadTopic(a, 0, 3) = %v, want %v (entry 0 is intact, before the corruption); log: %s", got, want, log.String())
	}
	if line := fmt.Sprintf("file=%s offset=%d topic=a entries=1", segs[0], 1*size); !strings.Contains(log.String(), line) {
		t.Fatalf("log %q does not say %q", log.String(), line)
	}
	if p := s.Pending("a"); p != 1 {
		t.Fatalf("pending a %d after the cut, want 1 (entry 0, returned)", p)
	}
	if got := topicValues(t, s, "a", 1, 3, 100, 1<<20); len(got) != 0 {
		t.Fatalf("ReadTopic(a, 1, 3) after the cut = %v, want none", got)
	}
	s.Ack(0)
	if p := s.Pending("a"); p != 0 {
		t.Fatalf("pending a %d after acking entry 0, want 0", p)
	}
}

// A corrupt entry ReadTopic finds in the active segment ends that segment
// as Read's does: a record appended after it goes to a new segment, and a
// restart, which cuts the damaged segment at the corrupt entry, keeps it.
// Appended behind the corrupt entry, it was acknowledged and then lost.
func TestReadTopicCutKeepsLaterAppends(t *testing.T) {
	dir := t.TempDir()
	var log logBuffer
	o := spool.Options{Dir: dir, Log: log.logger()}
	s := open(t, o)
	for i, tp := range []string{"a", "b"} {
		appendOne(t, s, rec(tp, fmt.Sprintf("%02d", i)))
	}
	readN(t, s, 2) // Read passed them (the drain left a in the spool)
	segs := segmentsIn(dir)
	flip(t, segs[0], 12) // entry 0 (a): its payload
	if got := topicValues(t, s, "a", 0, 2, 100, 1<<20); len(got) != 0 {
		t.Fatalf("ReadTopic(a, 0, 2) = %v, want none (entry 0 is corrupt)", got)
	}
	if line := fmt.Sprintf("file=%s offset=0 topic=a entries=1", segs[0]); !strings.Contains(log.String(), line) {
		t.Fatalf("log %q does not say %q", log.String(), line)
	}
	seq := appendOne(t, s, rec("b", "new"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, o)
	var found bool
	for _, e := range readN(t, s, int(s.Stats().Replayed)) {
		if e.Seq == seq && string(e.Value) == "new" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the record appended after ReadTopic cut a corrupt entry (seq %d) is gone after a restart; log: %s", seq, log.String())
	}
}

// Entries Read or ReadTopic cut as corrupt were appended and will never be
// read: Stats counts them (Dropped), so that what was appended is what was
// acked, dropped or is still held. They left Records and were counted
// nowhere.
func TestCorruptEntriesCutAreCounted(t *testing.T) {
	size := entrySize(t, rec("a", "00"))
	check := func(t *testing.T, s *spool.Spool, dropped int64) {
		t.Helper()
		st := s.Stats()
		if st.Dropped != dropped {
			t.Errorf("Stats.Dropped = %d, want %d", st.Dropped, dropped)
		}
		if st.Appended+st.Replayed != st.Acked+st.Dropped+st.Records {
			t.Errorf("appended %d + replayed %d != acked %d + dropped %d + records %d: entries counted nowhere",
				st.Appended, st.Replayed, st.Acked, st.Dropped, st.Records)
		}
	}
	t.Run("Read", func(t *testing.T) {
		dir := t.TempDir()
		var log logBuffer
		s := open(t, spool.Options{Dir: dir, SegmentBytes: 4 * size, Log: log.logger()})
		for i := range 6 {
			appendOne(t, s, rec("a", fmt.Sprintf("%02d", i)))
		}
		flip(t, segmentsIn(dir)[0], 1*size+12) // entry 1's payload: entries 1..3 cut
		if got, want := values(readN(t, s, 3)), []string{"00", "04", "05"}; !slices.Equal(got, want) {
			t.Fatalf("read %v, want %v; log: %s", got, want, log.String())
		}
		check(t, s, 3)
		s.Ack(0, 4)
		check(t, s, 3)
	})
	t.Run("ReadTopic", func(t *testing.T) {
		dir := t.TempDir()
		var log logBuffer
		s := open(t, spool.Options{Dir: dir, Log: log.logger()})
		for i, tp := range []string{"a", "b", "a", "a"} {
			appendOne(t, s, rec(tp, fmt.Sprintf("%02d", i)))
		}
		readN(t, s, 4) // the drain left a in the spool
		s.Ack(1)
		flip(t, segmentsIn(dir)[0], 2*size+12) // entry 2 (a): entries 2 and 3 cut
		if got, want := topicValues(t, s, "a", 0, 4, 100, 1<<20), []string{"0:00"}; !slices.Equal(got, want) {
			t.Fatalf("ReadTopic(a, 0, 4) = %v, want %v; log: %s", got, want, log.String())
		}
		check(t, s, 2)
	})
}
