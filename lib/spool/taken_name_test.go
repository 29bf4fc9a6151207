package spool_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
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
// entry that is not a file — a symbolic link to a directory, a named pipe
// (which the spool skips while running) — failed the start ("is a
// directory") or was removed as an empty segment. Each is left alone and
// logged, the segments replayed, and appends go on. (A link that leads
// nowhere may be a segment whose disk is missing: it fails the start, see
// TestOpenRefusesLinkedSegmentWhoseTargetIsGone.)
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
	for p, mode := range map[string]os.FileMode{link: os.ModeSymlink, fifo: os.ModeNamedPipe} {
		if fi, err := os.Lstat(p); err != nil || fi.Mode().Type() != mode {
			t.Errorf("%s: %v, want it left alone (%v)", p, err, mode)
		}
		if !regexp.MustCompile(`file=` + regexp.QuoteMeta(p) + `\s`).MatchString(log.String()) {
			t.Errorf("%s not logged: %q", p, log.String())
		}
	}
}

// childTruncateFailsNameTaken appends "a0", makes a directory named like
// the next segment, then appends b1, b2 and b3 in one Append that fails
// in b3 with every cut failing (as childTruncateFails): the next segment,
// which would mark where a0's segment ends, cannot take its name. It
// prints "failed ErrMaybeAppended-or-not ERR" and exits without closing
// the spool (a crash).
func childTruncateFailsNameTaken(dir string) {
	s := openWithA0(dir, "t")
	if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("%020d.seg", 1)), 0o755); err != nil {
		childFail("mkdir: %v", err)
	}
	bs := bigThree("t", "")
	limitInThird(s, bs)
	denySyscalls(unix.SYS_FTRUNCATE)
	_, err := s.Append(bs)
	fmt.Printf("failed %v %v\n", errors.Is(err, spool.ErrMaybeAppended), err)
	os.Exit(0)
}

// A failed write whose cut failed is marked by the next segment's name;
// skipping a name taken by a directory must not move that mark past the
// failed write's first entries: the write is either answered "may have
// been appended" (504) or never replayed (it was answered 503).
func TestFailedCutWithNextNameTakenNotReplayedAsNotWritten(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "truncfail-taken", dir)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "failed ") || strings.HasSuffix(lines[0], "<nil>") {
		t.Fatalf("child: %q, want the Append under the limit failed", lines)
	}
	maybe := strings.HasPrefix(lines[0], "failed true ")
	s := open(t, spool.Options{Dir: dir})
	if got := replayedPrefixes(t, s); !maybe && !slices.Equal(got, []string{"a0"}) {
		t.Fatalf("replayed %q after a failed Append answered not written (%s), want [a0]", got, lines[0])
	}
	appendOne(t, s, rec("t", "c1"))
}

// TestOpenRefusesLinkedSegmentWhoseTargetIsGone attacks "every entry past
// the persisted watermark is pending again": a segment kept as a symbolic
// link to a file on another disk (a segment, as the package says) dangles
// while that disk is not mounted. Taken for a file that is not the
// spool's, it was left out of the replay while the watermark moved past
// its seqs, so that once the disk was back its records — answered 202 —
// were dropped as acknowledged. The start must fail naming it instead (as
// for a segment it cannot open), or replay its records once it is there.
func TestOpenRefusesLinkedSegmentWhoseTargetIsGone(t *testing.T) {
	dir := t.TempDir()
	o := spool.Options{Dir: dir, SegmentBytes: 1} // a segment per append
	s := open(t, o)
	for _, v := range []string{"r0", "r1", "r2"} {
		appendOne(t, s, rec("t", v))
	}
	es := readN(t, s, 3)
	s.Ack(es[0].Seq)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// r2's segment moves to another disk, linked from the spool directory.
	name := fmt.Sprintf("%020d.seg", es[2].Seq)
	disk := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, name), filepath.Join(disk, name)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(disk, name), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
	// The disk is not mounted at this start.
	if err := os.Rename(disk, disk+".unmounted"); err != nil {
		t.Fatal(err)
	}
	s, err := spool.Open(o)
	if err == nil {
		got := readN(t, s, int(s.Stats().Replayed))
		for _, e := range got {
			s.Ack(e.Seq)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	} else if !strings.Contains(err.Error(), name) {
		t.Errorf("open with %s linked to nothing: %v, want an error naming it", name, err)
	}
	// The disk is back.
	if err := os.Rename(disk+".unmounted", disk); err != nil {
		t.Fatal(err)
	}
	s = open(t, o)
	var got []string
	if n := int(s.Stats().Replayed); n > 0 {
		got = values(readN(t, s, n))
	}
	if want := "r2"; !slices.Contains(got, want) {
		t.Fatalf("replayed %q once the linked segment's disk was back, want %s among them (appended, never acked)", got, want)
	}
}
