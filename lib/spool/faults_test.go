package spool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// denySyscalls makes every later call of the system calls nrs in this
// process fail with EIO (a seccomp filter on all its threads): a disk that
// fails them. ftruncate or fdatasync must be one of them: each of those
// two listed is checked to fail.
func denySyscalls(nrs ...uint32) {
	if !slices.Contains(nrs, unix.SYS_FTRUNCATE) && !slices.Contains(nrs, unix.SYS_FDATASYNC) {
		childFail("denySyscalls: neither ftruncate nor fdatasync to check")
	}
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		childFail("no seccomp architecture for %s", runtime.GOARCH)
	}
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // seccomp_data.arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: arch, Jt: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
	}
	for i, nr := range nrs { // a match jumps over the later ones and the allow
		filter = append(filter, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: nr, Jt: uint8(len(nrs) - i)})
	}
	filter = append(filter,
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EIO)},
	)
	probe, err := os.CreateTemp("", "spool-truncate-probe")
	if err != nil {
		childFail("probe: %v", err)
	}
	defer os.Remove(probe.Name())
	defer probe.Close()
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		childFail("no_new_privs: %v", err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		childFail("seccomp: %v", errno)
	}
	if err := probe.Truncate(0); slices.Contains(nrs, unix.SYS_FTRUNCATE) && !errors.Is(err, syscall.EIO) {
		childFail("ftruncate after the filter: %v, want EIO", err)
	}
	if err := unix.Fdatasync(int(probe.Fd())); slices.Contains(nrs, unix.SYS_FDATASYNC) && err != unix.EIO {
		childFail("fdatasync after the filter: %v, want EIO", err)
	}
}

// replayedPrefixes reads the entries s replayed at Open and returns the
// first two letters of each value ("a0", "b1", ...).
func replayedPrefixes(t *testing.T, s *spool.Spool) []string {
	t.Helper()
	got := values(readN(t, s, int(s.Stats().Replayed)))
	for i := range got {
		got[i] = got[i][:2]
	}
	return got
}

// openWithA0 opens the spool in dir and appends "a0" (topic) to it.
func openWithA0(dir, topic string) *spool.Spool {
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		childFail("open: %v", err)
	}
	if _, err := s.Append([]spool.Record{rec(topic, "a0")}); err != nil {
		childFail("append a0: %v", err)
	}
	return s
}

// limitInThird lowers the file size limit to what s holds plus the
// entries of bs[0] and bs[1] and 100 bytes: an Append of bs fails in the
// middle of bs[2]. raise sets the limit back.
func limitInThird(s *spool.Spool, bs []spool.Record) (raise func()) {
	room := s.Stats().Bytes + int64(spool.EntryLen(bs[0])+spool.EntryLen(bs[1])) + 100
	return limitFileSize(uint64(room))
}

// bigThree returns records b1, b2 and b3 of topic, values of 600 bytes
// more, all of key when it is not "" (else each its own).
func bigThree(topic, key string) []spool.Record {
	value := strings.Repeat("v", 600)
	bs := []spool.Record{rec(topic, "b1"+value), rec(topic, "b2"+value), rec(topic, "b3"+value)}
	if key != "" {
		for i := range bs {
			bs[i].Key = []byte(key)
		}
	}
	return bs
}

// failAppendInThird appends bs (three records) to s with writes past bs[2]'s
// middle refused (limitInThird) and every cut of a file failing from now
// on (EIO); with readOnly, that directory is read-only meanwhile (no next
// segment can be created). It returns the Append's error, the file size
// limit and the directory set back.
func failAppendInThird(s *spool.Spool, bs []spool.Record, readOnly string) error {
	raise := limitInThird(s, bs)
	denySyscalls(unix.SYS_FTRUNCATE)
	if readOnly != "" {
		chmodDir(readOnly, 0o555)
	}
	_, err := s.Append(bs)
	raise()
	if readOnly != "" {
		chmodDir(readOnly, 0o755)
	}
	return err
}

// childTruncateFails appends "a0", then, with writes past the entries of
// b1 and b2 refused (the file size limit: a full disk) and every cut of
// the file failing (EIO), appends b1, b2 and b3 in one Append, which
// fails, prints "failed ERR" and exits without closing the spool (a
// crash).
// With create, opening files fails too (EIO): the spool cannot start the
// next segment either, and it prints "failed ErrMaybeAppended-or-not".
// With after, it raises the limit and appends "c1" (as long as b1) before
// the crash, printing "after ERR-OR-nil", then "read V V" with the first
// two letters of the two entries Read returns.
func childTruncateFails(dir string, create, after bool) {
	s := openWithA0(dir, "t")
	value := strings.Repeat("v", 600)
	bs := bigThree("t", "")
	raise := limitInThird(s, bs) // b3 cut in its middle
	if create {
		denySyscalls(unix.SYS_FTRUNCATE, unix.SYS_OPENAT)
		_, err := s.Append(bs)
		fmt.Printf("failed %v\n", errors.Is(err, spool.ErrMaybeAppended))
		os.Exit(0)
	}
	denySyscalls(unix.SYS_FTRUNCATE)
	_, err := s.Append(bs)
	fmt.Printf("failed %v\n", err)
	raise()
	if after {
		_, err = s.Append([]spool.Record{rec("t", "c1"+value)})
		fmt.Printf("after %v\n", err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var got []string
		for len(got) < 2 {
			es, err := s.Read(ctx, 2-len(got))
			if err != nil {
				childFail("read: %v", err)
			}
			for _, e := range es {
				got = append(got, string(e.Value[:2]))
			}
		}
		fmt.Printf("read %s\n", strings.Join(got, " "))
	}
	os.Exit(0) // no Close: a crash
}

// An Append that failed (a full disk in the middle of its entries) and
// whose cut failed too (the disk refused the truncate) is never replayed
// by a restart: it was answered as not written (503), and the drain
// sending its whole entries to Kafka would break that.
func TestFailedAppendWhoseCutFailedNotReplayed(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "truncfail", dir)
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "failed ") || lines[0] == "failed <nil>" {
		t.Fatalf("child: %q, want the Append under the limit failed", lines)
	}
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatalf("open after the crash: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	got := replayedPrefixes(t, s)
	if !slices.Equal(got, []string{"a0"}) {
		t.Fatalf("replayed %q, want [a0]: entries of the failed Append (answered not written) come back", got)
	}
	readNone(t, s)
}

// An Append that failed, whose cut failed, and after which the spool could
// not create the next segment either (which would have marked where the
// committed entries end) says so: its error wraps ErrMaybeAppended, since a
// restart may replay it (kproxy answers 504, may have been written).
func TestFailedAppendNotMarkedSaysMaybeAppended(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "truncfail-nocreate", dir)
	if !slices.Equal(lines, []string{"failed true"}) {
		t.Fatalf("child: %q, want the failed Append's error to wrap ErrMaybeAppended", lines)
	}
}

// After an Append whose cut failed, the spool goes on in a new segment: the
// next Append works, Read returns it after the entries before the failed
// one, and a restart replays it, not the failed one.
func TestAppendAfterFailedCutReplayedAlone(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "truncfail-after", dir)
	if len(lines) != 3 || lines[0] == "failed <nil>" || lines[1] != "after <nil>" || lines[2] != "read a0 c1" {
		t.Fatalf("child: %q, want the Append under the limit failed, the one after it worked and Read returned a0 and c1", lines)
	}
	var log logBuffer
	s := open(t, spool.Options{Dir: dir, Log: log.logger()})
	got := replayedPrefixes(t, s)
	if !slices.Equal(got, []string{"a0", "c1"}) {
		t.Fatalf("replayed %q, want [a0 c1]", got)
	}
	readNone(t, s)
	if !strings.Contains(log.String(), "past the next segment's first seq") {
		t.Fatalf("open did not log the cut of the failed write: %s", log.String())
	}
}

// childTruncateFailsNewSegment appends "a0" (3000 bytes) into a segment of
// 4 KiB, then, with writes past 1500 bytes of a file refused and every cut
// failing, appends b1, b2 and b3 in one Append: the spool rolls, and the
// first write into the new segment fails. It prints "failed
// ErrMaybeAppended-or-not" and exits without closing the spool.
func childTruncateFailsNewSegment(dir string) {
	s, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 4 << 10})
	if err != nil {
		childFail("open: %v", err)
	}
	if _, err := s.Append([]spool.Record{rec("t", "a0"+strings.Repeat("v", 3000))}); err != nil {
		childFail("append a0: %v", err)
	}
	value := strings.Repeat("v", 600)
	raise := limitFileSize(1500) // b1 whole, b2 cut in its middle
	denySyscalls(unix.SYS_FTRUNCATE)
	_, err = s.Append([]spool.Record{rec("t", "b1"+value), rec("t", "b2"+value), rec("t", "b3"+value)})
	if err == nil {
		childFail("append past the file size limit worked")
	}
	fmt.Printf("failed %v\n", errors.Is(err, spool.ErrMaybeAppended))
	raise()
	os.Exit(0) // no Close: a crash
}

// A first write into a new segment that fails, and whose cut fails: the
// new segment's file is removed instead (its name is the next seq's, which
// a segment created after it would need), and a restart replays only the
// entries before it.
func TestFailedFirstWriteWhoseCutFailedNotReplayed(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "truncfail-roll", dir)
	if !slices.Equal(lines, []string{"failed false"}) {
		t.Fatalf("child: %q, want the Append failed, its new segment removed (not ErrMaybeAppended)", lines)
	}
	s := open(t, spool.Options{Dir: dir})
	got := replayedPrefixes(t, s)
	if !slices.Equal(got, []string{"a0"}) {
		t.Fatalf("replayed %q, want [a0]", got)
	}
	readNone(t, s)
}

// childTruncateFailsMarkAcked appends "a0" (topic p), then, with writes
// past the entries of b1 and b2 refused and every cut failing, appends b1,
// b2 and b3 in one Append, which fails: its segment keeps their bytes and
// the next one marks where its entries end. It appends "c1" (topic q) into
// that next segment, acks c1 alone (as the drain does when p's records wait,
// Kafka refusing them) and closes the spool, printing "failed ERR", "after
// ERR-OR-nil" and "closed ERR-OR-nil".
func childTruncateFailsMarkAcked(dir string) {
	s := openWithA0(dir, "p")
	err := failAppendInThird(s, bigThree("p", ""), "")
	fmt.Printf("failed %v\n", err)
	seq, err := s.Append([]spool.Record{rec("q", "c1")})
	fmt.Printf("after %v\n", err)
	if err == nil {
		s.Ack(seq)
	}
	fmt.Printf("closed %v\n", s.Close())
	os.Exit(0)
}

// The segment created after a failed write whose cut failed marks where
// the entries of the segment before it end. Its own entries acked while
// that segment still has entries waiting (another topic's, refused by
// Kafka), it must not go: a restart would then replay the failed write's
// whole entries, answered as not written (503).
func TestFailedWriteMarkNotRemovedBeforeItsSegment(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "truncfail-ackmark", dir)
	if len(lines) != 3 || lines[0] == "failed <nil>" || lines[1] != "after <nil>" || lines[2] != "closed <nil>" {
		t.Fatalf("child: %q, want the Append under the limit failed, the one after it worked and Close too", lines)
	}
	s := open(t, spool.Options{Dir: dir})
	got := replayedPrefixes(t, s)
	// c1 acked out of order may come again (at-least-once); b1, b2 never.
	if len(got) == 0 || got[0] != "a0" || slices.Contains(got, "b1") || slices.Contains(got, "b2") {
		t.Fatalf("replayed %q after a clean restart, want a0 (and c1, acked out of order) but none of the failed Append's records", got)
	}
	readNone(t, s)
}

// childTruncateFailsTwice appends "a0", then, with writes past the entries
// of b1 and b2 refused and every cut failing, appends b1, b2 and b3 in one
// Append, which fails: the next segment marks where a0's ends. With writes
// past 100 bytes refused, it appends c1 into that next segment, which fails
// too. It prints "failed ERR", then "failed2 ErrMaybeAppended-or-not", and
// exits without closing the spool (a crash).
func childTruncateFailsTwice(dir string) {
	s := openWithA0(dir, "t")
	value := strings.Repeat("v", 600)
	err := failAppendInThird(s, bigThree("t", ""), "")
	fmt.Printf("failed %v\n", err)
	raise := limitFileSize(100)
	_, err = s.Append([]spool.Record{rec("t", "c1"+value)})
	if err == nil {
		childFail("append past the file size limit worked")
	}
	fmt.Printf("failed2 %v\n", errors.Is(err, spool.ErrMaybeAppended))
	raise()
	os.Exit(0) // no Close: a crash
}

// A write that fails into the segment marking where a failed write's
// segment ends (its first), its cut failing too, must not take that
// segment's file away: a restart would replay the first failed write,
// answered as not written (503).
func TestFailedWriteIntoMarkKeepsIt(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "truncfail-twice", dir)
	if len(lines) != 2 || lines[0] == "failed <nil>" || !strings.HasPrefix(lines[1], "failed2 ") {
		t.Fatalf("child: %q, want both Appends under the limits failed", lines)
	}
	// The second failed write stays in the file that marks the first's
	// end: a restart may replay it, and its error says so (504).
	if lines[1] != "failed2 true" {
		t.Fatalf("child: %q, want the second failed Append's error to wrap ErrMaybeAppended", lines)
	}
	s := open(t, spool.Options{Dir: dir})
	got := replayedPrefixes(t, s)
	if !slices.Equal(got, []string{"a0"}) {
		t.Fatalf("replayed %q, want [a0]: the first failed Append (answered not written) comes back", got)
	}
	readNone(t, s)
}

// childTruncateFailsCreateLater appends "a0" (topic p), then, with writes
// past the entries of b1 and b2 refused, every cut failing and the
// directory read-only (no next segment can be created), appends b1, b2 and
// b3 (topic q, one key) in one Append, which fails, printing "failed
// ErrMaybeAppended-or-not". With the directory writable again it appends
// c1 (topic q, the same key), acks it alone (p's records waiting, as when
// Kafka refuses p) and closes the spool, printing "after ERR-OR-nil" and
// "closed ERR-OR-nil".
func childTruncateFailsCreateLater(dir string) {
	s := openWithA0(dir, "p")
	err := failAppendInThird(s, bigThree("q", "k"), dir)
	fmt.Printf("failed %v\n", errors.Is(err, spool.ErrMaybeAppended))
	c1 := rec("q", "c1")
	c1.Key = []byte("k")
	seq, err := s.Append([]spool.Record{c1})
	fmt.Printf("after %v\n", err)
	if err == nil {
		s.Ack(seq)
	}
	fmt.Printf("closed %v\n", s.Close())
	os.Exit(0)
}

// A failed write whose cut failed and whose next segment could not be
// created is answered 504 (a restart may replay it). The segment created
// by a later write marks where its segment's entries end as well: once a
// later record of its key is in that segment and acked (in Kafka), a
// restart must not replay the failed write after it.
func TestFailedWriteMarkedLaterNotReplayedAfterLaterRecords(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "truncfail-nocreate-later", dir, asOwnerWithoutPrivilege)
	if !slices.Equal(lines, []string{"failed true", "after <nil>", "closed <nil>"}) {
		t.Fatalf("child: %q, want the Append under the limit failed (maybe appended), the one after it worked and Close too", lines)
	}
	s := open(t, spool.Options{Dir: dir})
	got := replayedPrefixes(t, s)
	if len(got) == 0 || got[0] != "a0" || slices.Contains(got, "b1") || slices.Contains(got, "b2") {
		t.Fatalf("replayed %q after a clean restart, want a0 (and c1, acked out of order) but not the failed Append's records after c1, a later record of their key Kafka has", got)
	}
	readNone(t, s)
}

// childTruncateFailsPending appends "a0" (topic p), then, with writes past
// the entries of b1 and b2 refused, every cut failing and the directory
// read-only, appends b1, b2 and b3 (topic q, one key) in one Append, which
// fails, printing "failed ErrMaybeAppended-or-not". With the directory
// writable again it prints "pending N", Pending("q"); with wait, only once
// Pending("q") is 0 or after 5 s. It exits without closing the spool (a
// crash) and without another Append.
func childTruncateFailsPending(dir string, wait bool) {
	s := openWithA0(dir, "p")
	err := failAppendInThird(s, bigThree("q", "k"), dir)
	fmt.Printf("failed %v\n", errors.Is(err, spool.ErrMaybeAppended))
	for deadline := time.Now().Add(5 * time.Second); wait && s.Pending("q") > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("pending %d\n", s.Pending("q"))
	os.Exit(0) // no Close: a crash
}

// A failed write answered maybe appended (504: its cut and the next
// segment's creation failed) is replayed by a restart as long as no later
// segment marks where its segment ends. Until then Pending must count its
// records: at 0 their topic goes to Kafka directly again (kproxy), and a
// later record of their key written there would come before the replayed
// ones. Once the directory takes the next segment again, the spool makes
// it without waiting for another Append, and Pending drops back.
func TestFailedWriteMaybeAppendedPendingUntilMarked(t *testing.T) {
	for _, wait := range []bool{false, true} {
		dir := t.TempDir()
		mode := "truncfail-nocreate-pending"
		if wait {
			mode += "-wait"
		}
		lines := childLines(t, mode, dir, asOwnerWithoutPrivilege)
		if len(lines) != 2 || lines[0] != "failed true" || !strings.HasPrefix(lines[1], "pending ") {
			t.Fatalf("%s: child: %q, want the Append under the limit failed (maybe appended) and Pending", mode, lines)
		}
		if wait && lines[1] != "pending 0" {
			t.Fatalf("%s: child: %q, want Pending(q) back to 0 within 5 s of the directory taking segments again", mode, lines)
		}
		s := open(t, spool.Options{Dir: dir})
		got := replayedPrefixes(t, s)
		if slices.Contains(got, "b1") && lines[1] == "pending 0" {
			t.Fatalf("%s: Pending(q) was 0 after the failed Append (the topic may go to Kafka directly), and a restart replayed %q", mode, got)
		}
	}
}
