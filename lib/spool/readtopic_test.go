package spool_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// topicValues is what ReadTopic returns, as "seq:value".
func topicValues(t testing.TB, s *spool.Spool, topic string, from, to uint64, n, maxBytes int) []string {
	t.Helper()
	es, err := s.ReadTopic(topic, from, to, n, maxBytes)
	if err != nil {
		t.Fatalf("read topic %s [%d, %d): %v", topic, from, to, err)
	}
	var vs []string
	for _, e := range es {
		if e.Topic != topic {
			t.Fatalf("read topic %s: entry %d of topic %s", topic, e.Seq, e.Topic)
		}
		vs = append(vs, fmt.Sprintf("%d:%s", e.Seq, e.Value))
	}
	return vs
}

// seqValues are the entries of appended at seqs, as "seq:value".
func seqValues(appended []spool.Record, seqs ...int) []string {
	var vs []string
	for _, q := range seqs {
		vs = append(vs, fmt.Sprintf("%d:%s", q, appended[q].Value))
	}
	return vs
}

// ReadTopic returns exactly a topic's entries not acked within [from, to),
// in seq order, across segments, whatever Read returned; n and maxBytes
// bound it (one entry at least), and a read going on from where the last
// one stopped continues in order. A corrupt entry is cut as Read cuts it:
// it and the topic's later entries of its segment go, logged with the
// file and offset, the later segments are read. A segment it cannot open
// is an error that drops nothing.
func TestReadTopic(t *testing.T) {
	size := entrySize(t, rec("a", "00"))
	dir := t.TempDir()
	var log logBuffer
	s := open(t, spool.Options{Dir: dir, SegmentBytes: 5 * size, Log: log.logger()})
	// Seqs 0-29 in 6 segments of 5: topic a at every seq but those
	// divisible by 3 (b) and those ending in 4 (c).
	var appended []spool.Record
	for i := range 30 {
		topic := "a"
		switch {
		case i%3 == 0:
			topic = "b"
		case i%10 == 4:
			topic = "c"
		}
		appended = append(appended, rec(topic, fmt.Sprintf("%02d", i)))
		appendOne(t, s, appended[i])
	}
	if segs := segmentsIn(dir); len(segs) != 6 {
		t.Fatalf("%d segments, want 6", len(segs))
	}
	readN(t, s, 20) // Read's position does not matter
	s.Ack(1, 2, 5, 3, 22)

	cases := []struct {
		name        string
		topic       string
		from, to    uint64
		n, maxBytes int
		want        []string
	}{
		{"all of a", "a", 0, 30, 100, 1 << 20,
			seqValues(appended, 7, 8, 10, 11, 13, 16, 17, 19, 20, 23, 25, 26, 28, 29)},
		{"a within a segment", "a", 10, 14, 100, 1 << 20, seqValues(appended, 10, 11, 13)},
		{"a from the middle of one segment to the middle of another", "a", 12, 26, 100, 1 << 20,
			seqValues(appended, 13, 16, 17, 19, 20, 23, 25)},
		{"at most n", "a", 0, 30, 4, 1 << 20, seqValues(appended, 7, 8, 10, 11)},
		{"one at least", "a", 11, 30, 100, 1, seqValues(appended, 11)},
		{"c", "c", 0, 30, 100, 1 << 20, seqValues(appended, 4, 14)},
		{"b below the acked", "b", 0, 4, 100, 1 << 20, seqValues(appended, 0)},
		{"nothing in the window", "c", 5, 14, 100, 1 << 20, nil},
		{"an empty window", "a", 8, 8, 100, 1 << 20, nil},
		{"an unknown topic", "x", 0, 30, 100, 1 << 20, nil},
	}
	for _, c := range cases {
		if got := topicValues(t, s, c.topic, c.from, c.to, c.n, c.maxBytes); !slices.Equal(got, c.want) {
			t.Errorf("%s: ReadTopic(%s, %d, %d, %d, %d) = %v, want %v", c.name, c.topic, c.from, c.to, c.n, c.maxBytes, got, c.want)
		}
	}

	// Three at a time, each read going on from the last one's end.
	var got []string
	for from := uint64(0); ; {
		es, err := s.ReadTopic("a", from, 30, 3, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) == 0 {
			break
		}
		for _, e := range es {
			got = append(got, fmt.Sprintf("%d:%s", e.Seq, e.Value))
		}
		from = es[len(es)-1].Seq + 1
	}
	if want := cases[0].want; !slices.Equal(got, want) {
		t.Fatalf("a read 3 at a time: %v, want %v", got, want)
	}

	// A segment that cannot be opened: an error, nothing dropped.
	segs := segmentsIn(dir)
	if err := os.Rename(segs[2], segs[2]+".away"); err != nil {
		t.Fatal(err)
	}
	if es, err := s.ReadTopic("a", 0, 30, 100, 1<<20); err == nil || !strings.Contains(err.Error(), segs[2]) {
		t.Fatalf("read with segment %s gone: %d entries, err %v; want an error naming it", segs[2], len(es), err)
	}
	if err := os.Rename(segs[2]+".away", segs[2]); err != nil {
		t.Fatal(err)
	}
	if p := s.Pending("a"); p != 14 {
		t.Fatalf("pending a %d after the failed read, want 14", p)
	}

	// Entry 16 (a) corrupt: 16, 17 and 19 of a go; 18 (b) stays for b.
	flip(t, segs[3], 1*size+12)
	if got, want := topicValues(t, s, "a", 0, 30, 100, 1<<20), seqValues(appended, 7, 8, 10, 11, 13, 20, 23, 25, 26, 28, 29); !slices.Equal(got, want) {
		t.Fatalf("a with entry 16 corrupt: %v, want %v", got, want)
	}
	if line := fmt.Sprintf("file=%s offset=%d", segs[3], 1*size); !strings.Contains(log.String(), line) {
		t.Fatalf("log %q does not say %q", log.String(), line)
	}
	if p := s.Pending("a"); p != 11 {
		t.Fatalf("pending a %d after the cut, want 11", p)
	}
	if got, want := topicValues(t, s, "b", 15, 20, 100, 1<<20), seqValues(appended, 15, 18); !slices.Equal(got, want) {
		t.Fatalf("b with entry 16 corrupt: %v, want %v", got, want)
	}
}
