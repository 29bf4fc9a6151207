package spool_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// inOwnMountNS runs a child in a user and mount namespace of its own
// (root in it, whoever runs the test): it may mount a small file system
// that only it sees.
func inOwnMountNS(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
}

// childFullFS mounts a 256 KiB tmpfs on dir (in its own mount namespace),
// opens a new spool there and appends 1000-byte records until the file
// system is full. It then reads and acks every record (Kafka took them
// all), appends a record of the same size until that works again (the
// acked segments give their space back) or 30 s pass, closes the spool and opens it again. It
// prints "full APPENDED ENOSPC-or-not", "after ERROR-OR-nil" and
// "replayed N".
func childFullFS(dir string) {
	privateMounts()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		childFail("mount tmpfs: %v", err)
	}
	sdir := filepath.Join(dir, "spool")
	s, err := spool.Open(spool.Options{Dir: sdir})
	if err != nil {
		childFail("open: %v", err)
	}
	value := strings.Repeat("v", 1000)
	n := 0
	for ; n < 10000; n++ {
		if _, err = s.Append([]spool.Record{rec("t", fmt.Sprintf("%04d%s", n, value))}); err != nil {
			break
		}
	}
	fmt.Printf("full %d %v\n", n, errors.Is(err, syscall.ENOSPC))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for read := 0; read < n; {
		es, err := s.Read(ctx, n-read)
		if err != nil {
			childFail("read after %d of %d: %v", read, n, err)
		}
		for _, e := range es {
			s.Ack(e.Seq)
		}
		read += len(es)
	}
	// As kproxy's drain, wait for more: that closes the segment file read
	// last, whose space is not given back while it is open.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer wcancel()
	if es, err := s.Read(wctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		childFail("read past the end: %d entries, %v", len(es), err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// As large as the record the full file system refused.
		_, err = s.Append([]spool.Record{rec("t", "after"+value)})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling: the space comes back at a collect
	}
	fmt.Printf("after %v\n", err)
	if err := s.Close(); err != nil {
		childFail("close: %v", err)
	}
	if s, err = spool.Open(spool.Options{Dir: sdir}); err != nil {
		childFail("open again: %v", err)
	}
	fmt.Printf("replayed %d\n", s.Stats().Replayed)
	_ = s.Close()
}

// A new spool fills its file system (ENOSPC), then Kafka takes every
// record: the acked segments are removed, so that the spool takes records
// again, and a restart replays none of the acked ones. The watermark's
// first write must not need a block of a full disk.
func TestFullFileSystemGivesSpaceBackOnceAcked(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "fullfs", dir, inOwnMountNS)
	if len(lines) != 3 {
		t.Fatalf("child: %q", lines)
	}
	var full int
	var enospc bool
	if _, err := fmt.Sscanf(lines[0], "full %d %t", &full, &enospc); err != nil || !enospc || full < 50 {
		t.Fatalf("child: %q, want ENOSPC after 50 appends at least", lines[0])
	}
	if lines[1] != "after <nil>" {
		t.Fatalf("child: %q after acking all %d records: the spool kept the full file system's space", lines[1], full)
	}
	if lines[2] != "replayed 1" {
		t.Fatalf("child: %q, want only the record appended after (%d acked records replayed: duplicates)", lines[2], full)
	}
}

// asOwnerWithoutPrivilege runs a child in a user namespace of its own as
// an ordinary user owning the test's files (no CAP_DAC_OVERRIDE, whoever
// runs the test): a directory it makes read-only refuses it.
func asOwnerWithoutPrivilege(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 1000, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 1000, HostID: os.Getgid(), Size: 1}},
	}
}

// chmodDir sets dir's permissions to mode.
func chmodDir(dir string, mode os.FileMode) {
	if err := os.Chmod(dir, mode); err != nil {
		childFail("chmod: %v", err)
	}
}

// privateMounts makes the child's mounts private to its mount namespace:
// what it mounts then stays unseen outside it.
func privateMounts() {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		childFail("make mounts private: %v", err)
	}
}

// readThree reads s's first three entries.
func readThree(s *spool.Spool) []spool.Entry {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	es, err := s.Read(ctx, 3)
	if err != nil || len(es) != 3 {
		childFail("read: %d entries, %v", len(es), err)
	}
	return es
}

// ackAll acks every entry of es.
func ackAll(s *spool.Spool, es []spool.Entry) {
	for _, e := range es {
		s.Ack(e.Seq)
	}
}

// waitRemovalFailureLogged waits up to 20 s for log to hold the spool's
// failed removal of an acked segment.
func waitRemovalFailureLogged(log *logBuffer) {
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(log.String(), "remove acked segment") {
		if time.Now().After(deadline) {
			childFail("no failed removal logged: %s", log.String())
		}
		time.Sleep(10 * time.Millisecond) // polling the log
	}
}

// childRemoveRefused fills three segments, makes the spool's directory
// read-only, acks the first segment's entries and waits until the spool
// logged that it could not remove it, makes the directory writable again
// and waits up to 30 s for the segment to go. It prints "segments N" (the
// segment files then) and "bytes N" (Stats.Bytes).
func childRemoveRefused(dir string) {
	var log logBuffer
	s, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 4 << 10, Log: log.logger()})
	if err != nil {
		childFail("open: %v", err)
	}
	value := strings.Repeat("v", 600)
	for i := range 8 { // 3 entries a segment
		if _, err := s.Append([]spool.Record{rec("t", fmt.Sprintf("%d%s", i, value))}); err != nil {
			childFail("append: %v", err)
		}
	}
	if n := len(segmentsIn(dir)); n != 3 {
		childFail("%d segments, want 3", n)
	}
	es := readThree(s)
	chmodDir(dir, 0o555)
	ackAll(s, es)
	waitRemovalFailureLogged(&log)
	chmodDir(dir, 0o755)
	deadline := time.Now().Add(30 * time.Second)
	for len(segmentsIn(dir)) > 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling: the spool retries by itself
	}
	fmt.Printf("segments %d\n", len(segmentsIn(dir)))
	fmt.Printf("bytes %d\n", s.Stats().Bytes)
	_ = s.Close()
}

// A segment whose entries are all acked is removed even when the spool's
// directory refused it for a while (its permissions changed, then changed
// back): its disk space is given back while kproxy runs, not only at the
// next start.
func TestAckedSegmentRemovedOnceDirectoryWritableAgain(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "rmrefused", dir, asOwnerWithoutPrivilege)
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "bytes ") {
		t.Fatalf("child: %q", lines)
	}
	if lines[0] != "segments 2" {
		t.Fatalf("child: %q (%s) 30 s after the directory was writable again, want 2: the acked segment stays on disk until a restart", lines[0], lines[1])
	}
}

// childRemoveRefusedFull fills a spool of 8 entries' bytes (MaxBytes)
// with 8 entries in three segments, makes the directory read-only, acks
// the first segment's entries and waits until the spool logged that it
// could not remove its file, then appends one more entry (room in the
// last segment, none under MaxBytes while the acked file is on disk).
// It prints "refused ERR" (that Append's error), "disk N" (the entries'
// bytes in the segment files then, MaxBytes M: "max M"), then makes the
// directory writable again and prints "later ERR": an Append retried for
// up to 30 s, once the spool could remove the file.
func childRemoveRefusedFull(dir string) {
	var log logBuffer
	value := strings.Repeat("v", 600)
	entry := int64(spool.EntryLen(rec("t", "0"+value)))
	max := 8 * entry
	s, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 4 << 10, MaxBytes: max, Log: log.logger()})
	if err != nil {
		childFail("open: %v", err)
	}
	for i := range 8 { // 3 entries a segment
		if _, err := s.Append([]spool.Record{rec("t", fmt.Sprintf("%d%s", i, value))}); err != nil {
			childFail("append %d: %v", i, err)
		}
	}
	if _, err := s.Append([]spool.Record{rec("t", "8"+value)}); !errors.Is(err, spool.ErrFull) {
		childFail("append past MaxBytes: %v, want ErrFull", err)
	}
	es := readThree(s)
	chmodDir(dir, 0o555)
	ackAll(s, es)
	waitRemovalFailureLogged(&log)
	_, err = s.Append([]spool.Record{rec("t", "8"+value)})
	fmt.Printf("refused %v\n", err)
	disk := -s.Stats().Ahead // the zeros written ahead are not entries
	for _, name := range segmentsIn(dir) {
		fi, err := os.Stat(name)
		if err != nil {
			childFail("stat: %v", err)
		}
		disk += fi.Size()
	}
	fmt.Printf("disk %d max %d\n", disk, max)
	chmodDir(dir, 0o755)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = s.Append([]spool.Record{rec("t", "9"+value)})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling: the spool retries the removal by itself
	}
	fmt.Printf("later %v\n", err)
	_ = s.Close()
}

// An acked segment whose file the directory refuses to remove still takes
// its bytes on disk: it counts against MaxBytes (spool_max_bytes) until
// its file is gone, so that the spool never holds more than MaxBytes on
// disk, and its bytes are given back once the removal works.
func TestUnremovedSegmentCountsAgainstMaxBytes(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "rmfull", dir, asOwnerWithoutPrivilege)
	if len(lines) != 3 {
		t.Fatalf("child: %q", lines)
	}
	var disk, max int64
	if _, err := fmt.Sscanf(lines[1], "disk %d max %d", &disk, &max); err != nil {
		t.Fatalf("child: %q: %v", lines[1], err)
	}
	if lines[0] != "refused spool full" || disk > max {
		t.Fatalf("child: %q with an acked segment's file left on disk, %d bytes of entries on disk for MaxBytes %d: the file's bytes no longer counted", lines[0], disk, max)
	}
	if lines[2] != "later <nil>" {
		t.Fatalf("child: %q 30 s after the directory was writable again: the removed file's bytes not given back", lines[2])
	}
}

// childReadOnlyDir opens a spool, appends a record and closes it (the
// directory then holds the lock, the watermark and a segment), makes the
// directory read-only and opens it again: it prints "open ERR".
func childReadOnlyDir(dir string) {
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		childFail("open: %v", err)
	}
	if _, err := s.Append([]spool.Record{rec("t", "x")}); err != nil {
		childFail("append: %v", err)
	}
	if err := s.Close(); err != nil {
		childFail("close: %v", err)
	}
	chmodDir(dir, 0o555)
	s, err = spool.Open(spool.Options{Dir: dir})
	fmt.Printf("open %v\n", err)
	if err == nil {
		_ = s.Close()
	}
	_ = os.Chmod(dir, 0o755)
}

// A spool directory the process may not write to is refused by Open,
// naming the directory: with the lock and watermark files there from an
// earlier run, it opened, and every record the spool had to take later
// was refused (no segment can be created).
func TestOpenRefusesReadOnlyDirectory(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "rodir", dir, asOwnerWithoutPrivilege)
	if len(lines) != 1 || !strings.Contains(lines[0], dir) || !strings.Contains(lines[0], "not writable") {
		t.Fatalf("child: %q, want Open's error naming %s as not writable", lines, dir)
	}
}
