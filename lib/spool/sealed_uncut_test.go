package spool_test

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// childSealedUncut appends "a0", then "b1", whose segment is sealed once
// b1 is written and synced (Read found it corrupt meanwhile), after which
// every cut and every open of a file fails (EIO): the spool can neither
// take b1 back out of the sealed segment nor create the next one, which
// would mark where that segment's entries end. It prints whether the
// Append's error wraps ErrMaybeAppended and how many records of topic "t"
// are pending, and exits without closing the spool (a crash).
func childSealedUncut(dir string) {
	s := openWithA0(dir, "t")
	spool.SealAfterNextWrite(func() { denySyscalls(unix.SYS_FTRUNCATE, unix.SYS_OPENAT) })
	_, err := s.Append([]spool.Record{rec("t", "b1")})
	if err == nil {
		childFail("append b1: nil error, want it refused")
	}
	fmt.Printf("failed %v, pending %d\n", errors.Is(err, spool.ErrMaybeAppended), s.Pending("t"))
	os.Exit(0)
}

// A group commit whose segment Read sealed while it was written is written
// again to a new segment. When its bytes cannot be cut from the sealed
// segment and no next segment can be created, they stay there, whole and
// unmarked, and a restart replays them: the Append's error must say so
// (ErrMaybeAppended: kproxy answers 504, may have been written). It was a
// plain error (503, not written).
func TestSealedSegmentUncutSaysMaybeAppended(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "truncfail-sealed", dir)
	if !slices.Equal(lines, []string{"failed true, pending 2"}) {
		t.Errorf("child: %q, want the failed Append's error to wrap ErrMaybeAppended and b1 counted pending beside a0", lines)
	}
	s := open(t, spool.Options{Dir: dir})
	if got := replayedPrefixes(t, s); !slices.Equal(got, []string{"a0", "b1"}) {
		t.Errorf("replayed %q after the crash, want [a0 b1]: the copy of b1 left in the sealed segment", got)
	}
}
