package spool_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

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

// TestOpenLeavesNonFilesNamedLikeSegments attacks the same promise at a
// start: a directory named like a segment is left alone, but another
// entry that is not a file — a symbolic link to a directory, one that
// leads nowhere, a named pipe (which the spool skips while running) —
// failed the start ("is a directory", "no such file") or was removed as
// an empty segment. Each is left alone and logged, the segments replayed,
// and appends go on.
func TestOpenLeavesNonFilesNamedLikeSegments(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	appendOne(t, s, rec("t", "x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "00000000000000000005.seg")
	if err := os.Symlink(t.TempDir(), link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "00000000000000000006.seg")
	if err := os.Symlink(filepath.Join(dir, "gone"), dangling); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "00000000000000000007.seg")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	var log logBuffer
	s, err := spool.Open(spool.Options{Dir: dir, Log: log.logger()})
	if err != nil {
		t.Fatalf("open with entries named like segments that are not files: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if got := values(readN(t, s, int(s.Stats().Replayed))); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("replayed %q, want [x]", got)
	}
	appendOne(t, s, rec("t", "y"))
	if got := values(readN(t, s, 1)); !slices.Equal(got, []string{"y"}) {
		t.Fatalf("read %q, want [y]", got)
	}
	for p, mode := range map[string]os.FileMode{link: os.ModeSymlink, dangling: os.ModeSymlink, fifo: os.ModeNamedPipe} {
		if fi, err := os.Lstat(p); err != nil || fi.Mode().Type() != mode {
			t.Errorf("%s: %v, want it left alone (%v)", p, err, mode)
		}
		if !regexp.MustCompile(`file=` + regexp.QuoteMeta(p) + `\s`).MatchString(log.String()) {
			t.Errorf("%s not logged: %q", p, log.String())
		}
	}
}
