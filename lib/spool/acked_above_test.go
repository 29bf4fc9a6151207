package spool_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestCloseKeepsEntriesAckedAboveTheWatermark: entries Kafka acknowledged
// after an older one it has not (kproxy's drain with a topic parked, or a
// partition without leader while others drain) are not replayed after a
// clean Close: only the watermark was persisted, and the next start wrote
// every record drained since the oldest unacked one to Kafka again and
// counted them in Stats.Records and Replayed.
func TestCloseKeepsEntriesAckedAboveTheWatermark(t *testing.T) {
	dir := t.TempDir()
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	var seqs []uint64
	for _, r := range []spool.Record{rec("parked", "p0"), rec("t", "a"), rec("t", "b"), rec("parked", "p1"), rec("t", "c")} {
		seqs = append(seqs, appendOne(t, s, r))
	}
	readN(t, s, len(seqs))
	s.Ack(seqs[1], seqs[2], seqs[4]) // t drained; parked's records wait
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s = open(t, spool.Options{Dir: dir})
	st := s.Stats()
	if st.Records != 2 || st.Replayed != 2 {
		t.Errorf("after restart: records %d, replayed %d; want 2, 2 (the parked topic's)", st.Records, st.Replayed)
	}
	if n := s.Pending("t"); n != 0 {
		t.Errorf("pending of the drained topic after restart: %d, want 0", n)
	}
	es := readN(t, s, 2)
	if got, want := values(es), []string{"p0", "p1"}; !slices.Equal(got, want) {
		t.Errorf("read after restart: %q, want %q (the acked entries not again)", got, want)
	}
	readNone(t, s)

	// Closed again without an ack: the entries skipped stay acked.
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s = open(t, spool.Options{Dir: dir})
	if st := s.Stats(); st.Records != 2 {
		t.Errorf("after a second restart: records %d, want 2", st.Records)
	}
	if got, want := values(readN(t, s, 2)), []string{"p0", "p1"}; !slices.Equal(got, want) {
		t.Errorf("read after a second restart: %q, want %q", got, want)
	}
	readNone(t, s)
}

// crashCopy copies the files of the spool directory dir as they are on
// disk now, without closing the spool (what kill -9 leaves), into a new
// directory, and returns it.
func crashCopy(t *testing.T, dir string) string {
	t.Helper()
	snap := t.TempDir()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if de.Name() == "lock" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, de.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // a segment removed meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(snap, de.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

// TestCrashAfterTheWatermarkMovedReplaysEntriesAppendedSince: acked-above
// names its seqs from the watermark it was written with. Once the next run
// moved the watermark, a crash leaves the old file beside a newer
// watermark: read from the new one, its bits would mark entries appended
// since (and never acked) as acked, and a restart would drop them.
func TestCrashAfterTheWatermarkMovedReplaysEntriesAppendedSince(t *testing.T) {
	dir := t.TempDir()
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	var seqs []uint64
	for _, r := range []spool.Record{rec("parked", "p0"), rec("t", "a"), rec("t", "b"), rec("parked", "p1"), rec("t", "c")} {
		seqs = append(seqs, appendOne(t, s, r))
	}
	readN(t, s, len(seqs))
	s.Ack(seqs[1], seqs[2], seqs[4]) // t drained; parked's records wait
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s = open(t, spool.Options{Dir: dir})
	if got, want := values(readN(t, s, 2)), []string{"p0", "p1"}; !slices.Equal(got, want) {
		t.Fatalf("read after the clean stop: %q, want %q", got, want)
	}
	appendOne(t, s, rec("t", "n1"))
	appendOne(t, s, rec("t", "n2"))
	s.Ack(seqs[0]) // the watermark moves to p1
	var snap string
	waitFor(t, "a copy of the directory with the watermark at p1", func() bool {
		snap = crashCopy(t, dir)
		b, err := os.ReadFile(filepath.Join(snap, "acked"))
		return err == nil && len(b) >= 8 && binary.LittleEndian.Uint64(b) == seqs[3]
	})

	c := open(t, spool.Options{Dir: snap})
	got := values(readN(t, c, int(c.Stats().Replayed)))
	readNone(t, c)
	var missing []string
	for _, v := range []string{"p1", "n1", "n2"} {
		if !slices.Contains(got, v) {
			missing = append(missing, v)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("read after the crash: %q; %q not acked and lost", got, missing)
	}
	t.Logf("read after the crash: %q (an entry acked above the watermark is written again after a crash)", got)
}

// childUnremovedAbove appends nine records in three segments, bind-mounts
// the middle segment's file on itself (in a mount namespace of its own:
// unlink fails with EBUSY), acks every entry but the first, and closes the
// spool once it logged that the removal failed. It then opens the spool,
// prints "replayed N", closes it and does so once more.
func childUnremovedAbove(dir string) {
	privateMounts()
	var log logBuffer
	o := spool.Options{Dir: dir, SegmentBytes: 4 << 10, Log: log.logger()}
	s, err := spool.Open(o)
	if err != nil {
		childFail("open: %v", err)
	}
	value := strings.Repeat("v", 600)
	for i := range 9 { // 3 entries a segment
		if _, err := s.Append([]spool.Record{rec("t", fmt.Sprintf("%d%s", i, value))}); err != nil {
			childFail("append: %v", err)
		}
	}
	segs := segmentsIn(dir)
	if len(segs) != 3 {
		childFail("%d segments, want 3", len(segs))
	}
	if err := unix.Mount(segs[1], segs[1], "", unix.MS_BIND, ""); err != nil {
		childFail("bind mount: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var es []spool.Entry
	for len(es) < 9 {
		got, err := s.Read(ctx, 9-len(es))
		if err != nil {
			childFail("read: %d entries, %v", len(es), err)
		}
		es = append(es, got...)
	}
	ackAll(s, es[1:])
	waitRemovalFailureLogged(&log)
	for range 2 {
		if err := s.Close(); err != nil {
			childFail("close: %v", err)
		}
		if s, err = spool.Open(o); err != nil {
			childFail("open again: %v", err)
		}
		fmt.Printf("replayed %d\n", s.Stats().Replayed)
	}
	_ = s.Close()
}

// A fully acked segment whose file the directory refused to remove (EBUSY)
// is no longer among the spool's segments, but its entries are acked above
// the watermark as any other: a clean stop lists them, and the restart
// does not write them to Kafka again.
func TestCloseKeepsAckedEntriesOfAnUnremovedSegment(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "rmabove", dir, inOwnMountNS)
	if want := []string{"replayed 1", "replayed 1"}; !slices.Equal(lines, want) {
		t.Fatalf("child: %q, want %q: only the entry not acked replayed, after a restart and another", lines, want)
	}
}

// Close syncs the directory after it wrote acked-ranges, and after it
// removed it: the file's own sync does not make its name durable, and a
// power loss soon after the stop would bring back the old name or none.
func TestCloseSyncsTheDirectoryAfterAckedAbove(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var present []bool // at each sync of dir: was acked-ranges there
	spool.OnDirSynced(t, func(d string) {
		if d != dir {
			return
		}
		_, err := os.Stat(filepath.Join(dir, "acked-ranges"))
		mu.Lock()
		present = append(present, err == nil)
		mu.Unlock()
	})
	lastSync := func() (bool, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(present) == 0 {
			return false, 0
		}
		return present[len(present)-1], len(present)
	}
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	p0 := appendOne(t, s, rec("parked", "p0"))
	a := appendOne(t, s, rec("t", "a"))
	readN(t, s, 2)
	s.Ack(a)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if there, n := lastSync(); !there {
		t.Errorf("after a close that wrote acked-ranges: the last of %d syncs of the directory was before it", n)
	}

	s, err = spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if got := values(readN(t, s, 1)); !slices.Equal(got, []string{"p0"}) {
		t.Fatalf("read after restart: %q, want [p0]", got)
	}
	s.Ack(p0)
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "acked-ranges")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("acked-ranges after a close with nothing acked above the watermark: %v, want it removed", err)
	}
	if there, n := lastSync(); there {
		t.Errorf("after a close that removed acked-ranges: the last of %d syncs of the directory was before it", n)
	}
}

// TestAckedAboveSizeFollowsTheEntriesOnDisk: one record of a parked topic
// stays unacknowledged while 400,000 of another topic go through the
// spool, acknowledged, their segments removed. The entries acked above the
// watermark that Close lists were one bit per seq since the parked record
// (acked-above: 50 KB here, 1.1 MiB after 9 million records, past
// spool_max_bytes and all of it held in memory for the next run); they are
// now listed per segment on disk (acked-ranges), and the restart replays
// exactly the two records not acked.
func TestAckedAboveSizeFollowsTheEntriesOnDisk(t *testing.T) {
	dir := t.TempDir()
	o := spool.Options{Dir: dir, SegmentBytes: 64 << 10}
	s, err := spool.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	appendOne(t, s, rec("parked", "p"))
	batch := make([]spool.Record, 1000)
	for i := range batch {
		batch[i] = rec("t", "v")
	}
	const total = 400_000
	for n := 0; n < total; n += len(batch) {
		first, err := s.Append(batch)
		if err != nil {
			t.Fatal(err)
		}
		seqs := make([]uint64, len(batch))
		for i := range seqs {
			seqs[i] = first + uint64(i)
		}
		if n+len(batch) >= total {
			seqs = seqs[:len(seqs)-1] // the last one stays, in the last segment
		}
		s.Ack(seqs...)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var segs, segBytes int64
	for _, name := range segmentsIn(dir) {
		segs++
		segBytes += fileSize(t, name)
	}
	var above int64 // what lists them: acked-ranges, or acked-above before
	for _, name := range []string{"acked-ranges", "acked-above"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil {
			above += fi.Size()
		}
	}
	// The watermark, the CRC, and per segment on disk its base, its
	// count and a bit per entry (of 16 bytes at least: length, CRC,
	// time).
	if limit := 20 + segs*13 + segBytes/16/8; above > limit {
		t.Errorf("the entries acked above the watermark take %d bytes for %d segments on disk (at most %d)", above, segs, limit)
	}
	if _, err := os.Stat(filepath.Join(dir, "acked-above")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("acked-above written: %v", err)
	}
	s, err = spool.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Stats(); st.Records != 2 {
		t.Fatalf("after the restart the spool holds %d records, want the 2 not acked", st.Records)
	}
	if got := values(readN(t, s, 2)); !slices.Equal(got, []string{"p", "v"}) {
		t.Errorf("replayed %q, want [p v]", got)
	}
}

// TestAckedAboveOfAnEarlierVersionIsRead: a spool closed by an earlier
// version lists its entries acked above the watermark in acked-above (a
// bit per seq from the watermark on); the restart takes it, replaying only
// the entry not acked, and the next Close removes it for acked-ranges.
func TestAckedAboveOfAnEarlierVersionIsRead(t *testing.T) {
	dir := t.TempDir()
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	p := appendOne(t, s, rec("parked", "p"))
	a := appendOne(t, s, rec("t", "a"))
	s.Ack(a)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ranges := filepath.Join(dir, "acked-ranges")
	b, err := os.ReadFile(ranges)
	if err != nil {
		t.Fatal(err)
	}
	acked := binary.LittleEndian.Uint64(b)
	if acked != p {
		t.Fatalf("watermark %d, want %d", acked, p)
	}
	old := append([]byte(nil), b[:16]...)
	old = append(old, byte(1)<<(a-acked))
	old = binary.LittleEndian.AppendUint32(old, crc32.Checksum(old, crc32.MakeTable(crc32.Castagnoli)))
	if err := os.WriteFile(filepath.Join(dir, "acked-above"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(ranges); err != nil {
		t.Fatal(err)
	}
	s, err = spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Records != 1 {
		t.Errorf("after a restart with an earlier version's acked-above: %d records, want 1 (p)", st.Records)
	}
	if got := values(readN(t, s, 1)); !slices.Equal(got, []string{"p"}) {
		t.Errorf("replayed %q, want [p]", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "acked-above")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("acked-above after a Close: %v, want it removed", err)
	}
	if _, err := os.Stat(ranges); err != nil {
		t.Errorf("acked-ranges after a Close with an entry acked above the watermark: %v", err)
	}
}
