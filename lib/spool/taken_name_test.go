package spool_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestAppendGoesOnPastTakenSegmentName attacks "a file that is not the
// spool's is left alone": an entry of the spool directory that is not a
// segment (a directory an operator made) named like the segment the spool
// creates next made every Append fail ("file exists") until someone
// removed it. The spool must go on past it — while running and after a
// restart with it in place, at every roll — keeping its records in append
// order across the restart, and leave the entry alone.
func TestAppendGoesOnPastTakenSegmentName(t *testing.T) {
	dir := t.TempDir()
	// A roll before each append: each one creates a segment, named for
	// the next seq.
	o := spool.Options{Dir: dir, SegmentBytes: 1}
	var log logBuffer
	o.Log = log.logger()
	s := open(t, o)
	// Before the first segment: the name of seq 0 is taken.
	taken := []string{filepath.Join(dir, "00000000000000000000.seg")}
	if err := os.Mkdir(taken[0], 0o755); err != nil {
		t.Fatal(err)
	}
	var want []string
	add := func(v string) uint64 {
		t.Helper()
		seq, err := s.Append([]spool.Record{rec("t", v)})
		if err != nil {
			t.Fatalf("append %q with %q in the spool directory: %v", v, taken, err)
		}
		want = append(want, v)
		return seq
	}
	add("a")
	last := add("b")
	// The next segment's name, taken while the spool runs: the seq after
	// the last one appended.
	next := filepath.Join(dir, fmt.Sprintf("%020d.seg", last+1))
	if err := os.Mkdir(next, 0o755); err != nil {
		t.Fatal(err)
	}
	taken = append(taken, next)
	add("c")
	add("d")
	if got := values(readN(t, s, len(want))); !slices.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// After a restart: replayed in order, and appends go on.
	s = open(t, o)
	if got := values(readN(t, s, int(s.Stats().Replayed))); !slices.Equal(got, want) {
		t.Fatalf("replayed %q, want %q", got, want)
	}
	add("e")
	if got := values(readN(t, s, 1)); !slices.Equal(got, []string{"e"}) {
		t.Fatalf("read %q after the restart, want [e]", got)
	}
	for _, p := range taken {
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v, want it left alone", p, err)
		}
	}
}
