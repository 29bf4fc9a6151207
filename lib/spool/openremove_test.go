package spool_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// childRemoveRefusedAtOpen fills two segments, bind-mounts the first
// segment's file on itself (in a mount namespace of its own: unlink then
// fails with EBUSY while the directory stays writable), acks that
// segment's entries and closes the spool once it logged that the removal
// failed. It opens the spool again and prints "open ERR-OR-nil", and when
// it opened "replayed N bytes B"; then unmounts the file and prints
// "segments N" once the spool removed it (or after 3 s).
func childRemoveRefusedAtOpen(dir string) {
	privateMounts()
	var log logBuffer
	s, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 4 << 10, Log: log.logger()})
	if err != nil {
		childFail("open: %v", err)
	}
	value := strings.Repeat("v", 600)
	for i := range 6 { // 3 entries a segment
		if _, err := s.Append([]spool.Record{rec("t", fmt.Sprintf("%d%s", i, value))}); err != nil {
			childFail("append: %v", err)
		}
	}
	segs := segmentsIn(dir)
	if len(segs) != 2 {
		childFail("%d segments, want 2", len(segs))
	}
	if err := unix.Mount(segs[0], segs[0], "", unix.MS_BIND, ""); err != nil {
		childFail("bind mount: %v", err)
	}
	es := readThree(s)
	ackAll(s, es)
	waitRemovalFailureLogged(&log)
	if err := s.Close(); err != nil {
		childFail("close: %v", err)
	}
	var log2 logBuffer
	s, err = spool.Open(spool.Options{Dir: dir, SegmentBytes: 4 << 10, Log: log2.logger()})
	fmt.Printf("open %v\n", err)
	if err != nil {
		return
	}
	fmt.Printf("replayed %d bytes %d\n", s.Stats().Replayed, s.Stats().Bytes)
	if !strings.Contains(log2.String(), segs[0]) {
		fmt.Printf("log without the file: %q\n", log2.String())
	}
	if err := unix.Unmount(segs[0], 0); err != nil {
		childFail("unmount: %v", err)
	}
	// The file goes first, then its bytes from the count: both are
	// waited for (a loaded machine showed the gap).
	both := s.Stats().Bytes
	deadline := time.Now().Add(10 * time.Second)
	for (len(segmentsIn(dir)) > 1 || s.Stats().Bytes > both/2) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling: the spool retries by itself
	}
	fmt.Printf("segments %d bytes %d\n", len(segmentsIn(dir)), s.Stats().Bytes)
	_ = s.Close()
}

// A restart finding an acked segment it cannot remove (the directory
// writable, the file not: EBUSY) opens the spool: the file is logged,
// its bytes count toward MaxBytes until it is gone, and its removal is
// retried as while running. Before, Open failed, and kproxy did not start.
func TestOpenWithUnremovableAckedSegment(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "rmopen", dir, inOwnMountNS)
	if len(lines) == 0 || lines[0] != "open <nil>" {
		t.Fatalf("child: %q, want the spool opened with an acked segment it cannot remove", lines)
	}
	if len(lines) != 3 {
		t.Fatalf("child: %q", lines)
	}
	var replayed, bytes, segs, after int64
	if _, err := fmt.Sscanf(lines[1], "replayed %d bytes %d", &replayed, &bytes); err != nil {
		t.Fatalf("child: %q: %v", lines[1], err)
	}
	entry := int64(spool.EntryLen(rec("t", "0"+strings.Repeat("v", 600))))
	if replayed != 3 || bytes != 6*entry {
		t.Fatalf("child: %q, want 3 replayed and the bytes of both segments (%d): the unremoved file's bytes count toward MaxBytes", lines[1], 6*entry)
	}
	if _, err := fmt.Sscanf(lines[2], "segments %d bytes %d", &segs, &after); err != nil || segs != 1 || after != 3*entry {
		t.Fatalf("child: %q, want the acked segment removed (1 left, %d bytes) once it can be", lines[2], 3*entry)
	}
}

// childEmptyUnremovableAtOpen appends 3 records, acks them and closes the
// spool once their segment is gone, then leaves an empty segment file
// named for the next seq (as a crash right after a segment's creation
// does), bind-mounted on itself (unlink: EBUSY). It opens the spool again
// and prints "append ERR-OR-nil" for a record appended then, and
// "replayed N" after closing and opening it once more.
func childEmptyUnremovableAtOpen(dir string) {
	privateMounts()
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		childFail("open: %v", err)
	}
	for i := range 3 {
		if _, err := s.Append([]spool.Record{rec("t", fmt.Sprint(i))}); err != nil {
			childFail("append: %v", err)
		}
	}
	es := readThree(s)
	ackAll(s, es)
	deadline := time.Now().Add(10 * time.Second)
	for len(segmentsIn(dir)) > 0 {
		if time.Now().After(deadline) {
			childFail("acked segment not removed")
		}
		time.Sleep(10 * time.Millisecond) // polling: the spool removes it by itself
	}
	if err := s.Close(); err != nil {
		childFail("close: %v", err)
	}
	empty := dir + "/00000000000000000003.seg"
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		childFail("empty segment: %v", err)
	}
	if err := unix.Mount(empty, empty, "", unix.MS_BIND, ""); err != nil {
		childFail("bind mount: %v", err)
	}
	if s, err = spool.Open(spool.Options{Dir: dir}); err != nil {
		childFail("open again: %v", err)
	}
	_, err = s.Append([]spool.Record{rec("t", "after")})
	fmt.Printf("append %v\n", err)
	if err := s.Close(); err != nil {
		childFail("close: %v", err)
	}
	if s, err = spool.Open(spool.Options{Dir: dir}); err != nil {
		childFail("open once more: %v", err)
	}
	fmt.Printf("replayed %d\n", s.Stats().Replayed)
	_ = s.Close()
}

// An empty segment file named for the next seq that cannot be removed at
// Open takes the next entries: the next segment needs its name, and
// creating it again would fail for as long as the file stays.
func TestOpenWithUnremovableEmptySegmentAppends(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "rmempty", dir, inOwnMountNS)
	if len(lines) != 2 || lines[0] != "append <nil>" || lines[1] != "replayed 1" {
		t.Fatalf("child: %q, want the append to work and be replayed", lines)
	}
}
