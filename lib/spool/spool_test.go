package spool_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

func open(t testing.TB, o spool.Options) *spool.Spool {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := spool.Open(o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func rec(topic, value string) spool.Record {
	return spool.Record{Topic: topic, Key: []byte("k-" + value), Value: []byte(value)}
}

func appendOne(t testing.TB, s *spool.Spool, r spool.Record) uint64 {
	t.Helper()
	seq, err := s.Append([]spool.Record{r})
	if err != nil {
		t.Fatalf("append %q: %v", r.Value, err)
	}
	return seq
}

// readN reads exactly n entries, failing the test after 10 s.
func readN(t testing.TB, s *spool.Spool, n int) []spool.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var es []spool.Entry
	for len(es) < n {
		got, err := s.Read(ctx, n-len(es))
		if err != nil {
			t.Fatalf("read after %d of %d entries: %v", len(es), n, err)
		}
		es = append(es, got...)
	}
	return es
}

// readNone fails the test when Read returns an entry within 100 ms.
func readNone(t testing.TB, s *spool.Spool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if es, err := s.Read(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read: %d entries (first %+v), err %v; want none", len(es), es, err)
	}
}

func values(es []spool.Entry) []string {
	var vs []string
	for _, e := range es {
		vs = append(vs, string(e.Value))
	}
	return vs
}

// segmentsIn lists dir's segment files.
func segmentsIn(dir string) []string {
	names, _ := filepath.Glob(filepath.Join(dir, "*.seg")) // the pattern is valid
	return names
}

// logBuffer is a logger writing into a buffer the test reads.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	recs := []spool.Record{
		{Topic: "a", Key: nil, Value: []byte("no key")},
		{Topic: "a", Key: []byte{}, Value: []byte("empty key")},
		{Topic: "b", Key: []byte("k"), Value: []byte{}, Headers: []spool.Header{{Key: "h1", Value: []byte("v1")}, {Key: "", Value: nil}}},
	}
	before := time.Now()
	first, err := s.Append(recs)
	if err != nil {
		t.Fatal(err)
	}
	check := func(es []spool.Entry, first uint64) {
		t.Helper()
		for i, e := range es {
			if e.Seq != first+uint64(i) {
				t.Errorf("entry %d: seq %d, want %d", i, e.Seq, first+uint64(i))
			}
			if e.Appended.Before(before.Add(-time.Millisecond)) || e.Appended.After(time.Now()) {
				t.Errorf("entry %d: appended %v, not during the test", i, e.Appended)
			}
			want := recs[i]
			if want.Headers != nil {
				want.Headers[1].Value = []byte{}
			}
			if e.Topic != want.Topic || !bytes.Equal(e.Value, want.Value) || (e.Key == nil) != (want.Key == nil) ||
				!bytes.Equal(e.Key, want.Key) || !reflect.DeepEqual(e.Headers, want.Headers) {
				t.Errorf("entry %d: %+v, want %+v", i, e.Record, want)
			}
		}
	}
	check(readN(t, s, 3), first)
	if got := [2]int{s.Pending("a"), s.Pending("b")}; got != [2]int{2, 1} {
		t.Errorf("pending a, b = %v, want [2 1]", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(recs); err == nil {
		t.Error("append after close: no error")
	}
	if _, err := s.Read(context.Background(), 1); err == nil {
		t.Error("read after close: no error")
	}
	s = open(t, spool.Options{Dir: dir})
	check(readN(t, s, 3), first)
	if st := s.Stats(); st.Replayed != 3 || st.Records != 3 || st.Cut != 0 {
		t.Errorf("stats after reopen: %+v, want 3 replayed and pending, nothing cut", st)
	}
	if got := [2]int{s.Pending("a"), s.Pending("b")}; got != [2]int{2, 1} {
		t.Errorf("pending a, b after reopen = %v, want [2 1]", got)
	}
}

// Read blocks until an entry is appended, returns entries appended while it
// was reading at the next call, and returns when Close is called.
func TestReadWaits(t *testing.T) {
	s := open(t, spool.Options{})
	got := make(chan []spool.Entry)
	go func() {
		es, err := s.Read(context.Background(), 10)
		if err != nil {
			t.Errorf("read: %v", err)
		}
		got <- es
	}()
	time.Sleep(50 * time.Millisecond) // Read is waiting (or not yet called: either way it must return the entry)
	appendOne(t, s, rec("t", "1"))
	select {
	case es := <-got:
		if !slices.Equal(values(es), []string{"1"}) {
			t.Fatalf("read %v, want [1]", values(es))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read did not return after an append")
	}
	appendOne(t, s, rec("t", "2"))
	appendOne(t, s, rec("t", "3"))
	if vs := values(readN(t, s, 2)); !slices.Equal(vs, []string{"2", "3"}) {
		t.Fatalf("read %v, want [2 3]", vs)
	}
	readNone(t, s)
	done := make(chan error)
	go func() {
		_, err := s.Read(context.Background(), 1)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("read returned no error at close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read did not return at close")
	}
}

func TestLockRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	if s2, err := spool.Open(spool.Options{Dir: dir}); err == nil {
		_ = s2.Close()
		t.Fatal("second open of the directory: no error")
	} else if !strings.Contains(err.Error(), dir) {
		t.Fatalf("second open: error %q does not name the directory", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, spool.Options{Dir: dir})
}

// TestLockKeptWhenTheLockFileIsDeleted: the lock was the file lock in the
// directory, and nothing held the directory itself: once that file was
// deleted (an rm, a cleaner of old files: it is never written after its
// creation), a second process opened the spool beside the first, two
// writers on the same segments. The directory is locked now.
func TestLockKeptWhenTheLockFileIsDeleted(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	if err := os.Remove(filepath.Join(dir, "lock")); err != nil {
		t.Fatal(err)
	}
	if s2, err := spool.Open(spool.Options{Dir: dir}); err == nil {
		_ = s2.Close()
		t.Fatal("open of a directory in use, its lock file deleted: no error")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("open of a directory in use, its lock file deleted: %v, want in use", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, spool.Options{Dir: dir})
}

// 64 goroutines append at once: every entry is read back once, each
// goroutine's in its order, with consecutive seqs, and one fsync covers
// many appends.
func TestConcurrentAppendsGrouped(t *testing.T) {
	const writers, each = 64, 40
	s := open(t, spool.Options{SegmentBytes: 64 << 10}) // several segments
	before := spool.Fsyncs()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := s.Append([]spool.Record{rec(fmt.Sprint("t", w%4), fmt.Sprintf("%d-%d", w, i))}); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	syncs := spool.Fsyncs() - before
	es := readN(t, s, writers*each)
	readNone(t, s)
	next := make([]int, writers)
	for i, e := range es {
		if e.Seq != es[0].Seq+uint64(i) {
			t.Fatalf("entry %d: seq %d after %d", i, e.Seq, es[0].Seq)
		}
		var w, n int
		if _, err := fmt.Sscanf(string(e.Value), "%d-%d", &w, &n); err != nil || n != next[w] {
			t.Fatalf("entry %d: %q, want writer %d's record %d", i, e.Value, w, next[w])
		}
		next[w]++
	}
	t.Logf("%d appends, %d fsyncs", writers*each, syncs)
	if syncs > writers*each/4 {
		t.Errorf("%d fsyncs for %d appends from %d goroutines: not grouped", syncs, writers*each, writers)
	}
	for i := range 4 {
		if p := s.Pending(fmt.Sprint("t", i)); p != writers*each/4 {
			t.Errorf("pending t%d = %d, want %d", i, p, writers*each/4)
		}
	}
}

// An append past MaxBytes fails with ErrFull and leaves nothing: not on
// disk, not for Read. Acking frees the room.
func TestFullLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir, MaxBytes: 1000, SegmentBytes: 400})
	// A batch whose first records would fit is refused whole.
	batch := make([]spool.Record, 50)
	for i := range batch {
		batch[i] = rec("t", "batch")
	}
	if _, err := s.Append(batch); !errors.Is(err, spool.ErrFull) {
		t.Fatalf("append of 50 records: %v, want ErrFull", err)
	}
	if st := s.Stats(); st.Bytes != 0 || st.Records != 0 {
		t.Fatalf("after a refused batch: %+v", st)
	}
	var seqs []uint64
	var err error
	for i := 0; ; i++ {
		var seq uint64
		if seq, err = s.Append([]spool.Record{rec("t", fmt.Sprintf("%03d", i))}); err != nil {
			break
		}
		seqs = append(seqs, seq)
	}
	if !errors.Is(err, spool.ErrFull) {
		t.Fatalf("append: %v, want ErrFull", err)
	}
	st := s.Stats()
	var onDisk int64
	for _, name := range segmentsIn(dir) {
		onDisk += fileSize(t, name)
	}
	// The segment files hold the entries and the zeros written ahead of
	// them, never more than MaxBytes in all.
	if onDisk != st.Bytes+st.Ahead || onDisk > 1000 || st.Records != int64(len(seqs)) {
		t.Fatalf("after ErrFull: %d bytes in segment files, stats %+v, %d appends succeeded", onDisk, st, len(seqs))
	}
	if vs := values(readN(t, s, len(seqs))); len(vs) != len(seqs) || vs[len(vs)-1] != fmt.Sprintf("%03d", len(seqs)-1) {
		t.Fatalf("read %v after %d appends", vs, len(seqs))
	}
	readNone(t, s)
	s.Ack(seqs...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Append([]spool.Record{rec("t", "again")})
		if err == nil {
			break
		}
		if !errors.Is(err, spool.ErrFull) || time.Now().After(deadline) {
			t.Fatalf("append after acking everything: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if vs := values(readN(t, s, 1)); vs[0] != "again" {
		t.Fatalf("read %v, want [again]", vs)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Acks in any order: a segment goes when all its entries are acked, a
// restart after Close replays the entries not acked only (after a crash,
// every entry after the contiguous watermark), and seqs
// keep increasing across a restart even when every segment was removed.
func TestAckOutOfOrder(t *testing.T) {
	dir := t.TempDir()
	o := spool.Options{Dir: dir, SegmentBytes: 5 * entrySize(t, rec("t", "00"))}
	s := open(t, o)
	var seqs []uint64
	for i := range 20 {
		seqs = append(seqs, appendOne(t, s, rec("t", fmt.Sprintf("%02d", i))))
	}
	if n := len(segmentsIn(dir)); n != 4 {
		t.Fatalf("%d segments for 20 entries, 5 a segment: want 4", n)
	}
	readN(t, s, 20)
	// The second segment, in reverse: it goes; the watermark stays at 0.
	s.Ack(seqs[9], seqs[8], seqs[7], seqs[6], seqs[5])
	waitFor(t, "the second segment's removal", func() bool { return len(segmentsIn(dir)) == 3 })
	// Then the first, but for its entry 2, and entry 12: the watermark
	// moves to entry 2.
	s.Ack(seqs[4], seqs[12], seqs[3], seqs[1], seqs[0])
	if st := s.Stats(); st.Records != 10 || st.Acked != 10 {
		t.Fatalf("stats %+v, want 10 records pending, 10 acked", st)
	}
	if p := s.Pending("t"); p != 10 {
		t.Fatalf("pending %d, want 10", p)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, o)
	es := readN(t, s, 10) // 2 and 10..19 but 12: 3, 4 and 12, acked out of order, are not written again
	if want := []string{"02", "10", "11", "13", "14", "15", "16", "17", "18", "19"}; !slices.Equal(values(es), want) {
		t.Fatalf("replayed %v, want %v", values(es), want)
	}
	for _, e := range es {
		if e.Seq != seqs[atoi(t, string(e.Value))] {
			t.Fatalf("replayed %q with seq %d, appended as %d", e.Value, e.Seq, seqs[atoi(t, string(e.Value))])
		}
	}
	readNone(t, s)
	if st := s.Stats(); st.Replayed != 10 || st.Records != 10 {
		t.Fatalf("stats after reopen %+v, want 10 replayed", st)
	}
	// Everything acked: every segment goes, and the next seq is still new.
	for _, e := range es {
		s.Ack(e.Seq)
	}
	// The bytes leave the count just after the file goes.
	waitFor(t, "every segment's removal", func() bool { return len(segmentsIn(dir)) == 0 && s.Stats().Bytes == 0 })
	if st := s.Stats(); st.Records != 0 || st.Bytes != 0 || !st.Oldest.IsZero() || s.Pending("t") != 0 {
		t.Fatalf("stats with everything acked: %+v, pending %d", st, s.Pending("t"))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, o)
	readNone(t, s)
	if seq := appendOne(t, s, rec("t", "new")); seq <= seqs[19] {
		t.Fatalf("seq %d after a restart, not above the last one before (%d)", seq, seqs[19])
	}
}

// entrySize is how many bytes r takes in a segment.
func entrySize(t testing.TB, r spool.Record) int64 {
	t.Helper()
	s := open(t, spool.Options{})
	appendOne(t, s, r)
	return s.Stats().Bytes
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A torn or corrupt entry cuts its segment there: logged with the file and
// offset, the entries before it and the later segments kept, new entries
// appendable, and a second Open finds nothing more to cut. A segment before
// the last found empty (truncated to zero) lost its entries: logged too.
func TestCutTornOrCorrupt(t *testing.T) {
	size := entrySize(t, rec("t", "00"))
	for _, tc := range []struct {
		name   string
		damage func(t testing.TB, name string, at int64) // truncate or flip
		seg    int                                       // the segment damaged, of 3
		at     int64                                     // where
		cut    int64                                     // the offset of the cut logged
		kept   []int                                     // the entries left, of 0..14
	}{
		{"torn tail", truncate, 2, 5*size - 3, 4 * size, span(0, 14)},
		{"torn header", truncate, 2, 4*size + 5, 4 * size, span(0, 14)},
		{"corrupt byte in the last segment", flip, 2, 3*size + 12, 3 * size, span(0, 13)},
		{"corrupt length in the last segment", flip, 2, 1*size + 1, 1 * size, span(0, 11)},
		{"corrupt byte in the middle of a segment before the last", flip, 0, 2*size + size - 1, 2 * size,
			append(span(0, 2), span(5, 15)...)},
		{"corrupt first entry of a segment before the last", flip, 1, 9, 0, append(span(0, 5), span(10, 15)...)},
		{"segment before the last truncated to zero", truncate, 1, 0, 0, append(span(0, 5), span(10, 15)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var log logBuffer
			o := spool.Options{Dir: dir, SegmentBytes: 5 * size, Log: log.logger()}
			s := open(t, o)
			for i := range 15 {
				appendOne(t, s, rec("t", fmt.Sprintf("%02d", i)))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			segs := segmentsIn(dir)
			if len(segs) != 3 {
				t.Fatalf("%d segments, want 3", len(segs))
			}
			file, offset := segs[tc.seg], tc.cut
			tc.damage(t, file, tc.at)
			var before int64
			for _, name := range segs {
				before += fileSize(t, name)
			}
			s = open(t, o)
			line := fmt.Sprintf("file=%s offset=%d", file, offset)
			if !strings.Contains(log.String(), line) {
				t.Fatalf("log %q does not say %q", log.String(), line)
			}
			for _, name := range segmentsIn(dir) {
				if fileSize(t, name) == 0 {
					t.Errorf("empty segment %s kept", name)
				}
			}
			var want []string
			for _, i := range tc.kept {
				want = append(want, fmt.Sprintf("%02d", i))
			}
			st := s.Stats()
			if cut := before - int64(len(want))*size; st.Cut != cut || st.Replayed != int64(len(want)) {
				t.Errorf("stats %+v, want %d bytes cut, %d replayed", st, cut, len(want))
			}
			if vs := values(readN(t, s, len(want))); !slices.Equal(vs, want) {
				t.Fatalf("read %v, want %v", vs, want)
			}
			readNone(t, s)
			appendOne(t, s, rec("t", "new"))
			if vs := values(readN(t, s, 1)); vs[0] != "new" {
				t.Fatalf("read %v, want [new]", vs)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = open(t, o)
			if vs := values(readN(t, s, len(want)+1)); !slices.Equal(vs, append(want, "new")) {
				t.Fatalf("after a second open: read %v, want %v and new", vs, want)
			}
			if st := s.Stats(); st.Cut != 0 {
				t.Errorf("second open cut %d bytes", st.Cut)
			}
		})
	}
}

func span(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func truncate(t testing.TB, name string, size int64) {
	t.Helper()
	if err := os.Truncate(name, size); err != nil {
		t.Fatal(err)
	}
}

func flip(t testing.TB, name string, offset int64) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, offset); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, offset); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t testing.TB, name string) int64 {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// BenchmarkAppend64 appends from 64 goroutines, one record (a 200-byte
// value, as scripts/spoolloop writes) per Append; compare its records/s
// with `go run ./scripts/spoolloop -group 64` on the same disk.
func BenchmarkAppend64(b *testing.B) {
	s := open(b, spool.Options{SegmentBytes: 16 << 20})
	r := spool.Record{Topic: "bench", Key: []byte("key-0000"), Value: make([]byte, 200)}
	var next atomic.Int64
	before := spool.Fsyncs()
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			recs := []spool.Record{r}
			for next.Add(1) <= int64(b.N) {
				if _, err := s.Append(recs); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(spool.Fsyncs()-before)/b.Elapsed().Seconds(), "fsyncs/s")
}

// The watermark is persisted while the spool stays open (a crash does not
// call Close): a copy of the directory taken then replays only the entries
// after it.
func TestWatermarkPersistedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	var seqs []uint64
	for i := range 10 {
		seqs = append(seqs, appendOne(t, s, rec("t", fmt.Sprint(i))))
	}
	readN(t, s, 10)
	s.Ack(seqs[:6]...)
	acked := time.Now()
	var replayed []string
	// When the copy that replays 4 entries was taken: what comes after
	// (opening and reading it, fsyncs on a loaded disk) is the test's own
	// time, not the spool's.
	var copied time.Time
	waitFor(t, "a copy of the directory that replays 4 entries", func() bool {
		copied = time.Now()
		snap := t.TempDir()
		for _, name := range append(segmentsIn(dir), filepath.Join(dir, "acked")) {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(snap, filepath.Base(name)), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		c, err := spool.Open(spool.Options{Dir: snap})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		replayed = values(readN(t, c, int(c.Stats().Replayed)))
		return len(replayed) == 4
	})
	// Every 100 ms; a copy-and-replay try that failed just before, its
	// fsyncs on a disk other tests load, counts too: 3 s. A watermark
	// persisted only at Close fails by the 10 s of waitFor.
	if d := copied.Sub(acked); d > 3*time.Second {
		t.Errorf("watermark persisted %v after the acks", d)
	}
	if !slices.Equal(replayed, []string{"6", "7", "8", "9"}) {
		t.Fatalf("replayed %v, want [6 7 8 9]", replayed)
	}
}

// An entry the disk changes after Open (bit rot) does not stop Read: it
// cuts that segment there as Open would, logged with the file and offset,
// and goes on. In the active segment too: a later append goes to a new one
// and is read.
func TestReadCutsCorruptEntry(t *testing.T) {
	size := entrySize(t, rec("t", "00"))
	dir := t.TempDir()
	var log logBuffer
	o := spool.Options{Dir: dir, SegmentBytes: 5 * size, Log: log.logger()}
	s := open(t, o)
	for i := range 15 {
		appendOne(t, s, rec("t", fmt.Sprintf("%02d", i)))
	}
	segs := segmentsIn(dir)
	if len(segs) != 3 {
		t.Fatalf("%d segments, want 3", len(segs))
	}
	flip(t, segs[0], 2*size+12) // entry 2: 2, 3 and 4 go
	flip(t, segs[2], 2*size+12) // entry 12, in the active segment: 12, 13 and 14 go
	es := readN(t, s, 9)
	if want := []string{"00", "01", "05", "06", "07", "08", "09", "10", "11"}; !slices.Equal(values(es), want) {
		t.Fatalf("read %v, want %v", values(es), want)
	}
	readNone(t, s)
	for _, file := range []string{segs[0], segs[2]} {
		if line := fmt.Sprintf("file=%s offset=%d", file, 2*size); !strings.Contains(log.String(), line) {
			t.Fatalf("log %q does not say %q", log.String(), line)
		}
	}
	if st := s.Stats(); st.Cut != 6*size || st.Records != 9 || s.Pending("t") != 9 {
		t.Fatalf("stats %+v, pending %d: want %d bytes cut, 9 records", st, s.Pending("t"), 6*size)
	}
	seq := appendOne(t, s, rec("t", "new"))
	if es := readN(t, s, 1); es[0].Seq != seq || string(es[0].Value) != "new" {
		t.Fatalf("read %d %q, want %d new", es[0].Seq, es[0].Value, seq)
	}
	for _, e := range es {
		s.Ack(e.Seq)
	}
	s.Ack(seq)
	// The bytes leave the count just after the file goes.
	waitFor(t, "every segment's removal", func() bool { return len(segmentsIn(dir)) == 0 && s.Stats().Bytes == 0 })
	if st := s.Stats(); st.Records != 0 || st.Bytes != 0 || s.Pending("t") != 0 {
		t.Fatalf("stats with everything read acked: %+v, pending %d", st, s.Pending("t"))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, o)
	readNone(t, s)
}

// Pending counts each topic's entries when one Append interleaves topics
// (publish counts a run of one topic at once).
func TestPendingInterleavedTopics(t *testing.T) {
	s := open(t, spool.Options{})
	if _, err := s.Append([]spool.Record{rec("a", "1"), rec("a", "2"), rec("b", "3"), rec("a", "4"), rec("c", "5"), rec("c", "6")}); err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]int{"a": 3, "b": 1, "c": 2, "d": 0} {
		if got := s.Pending(topic); got != want {
			t.Errorf("Pending(%s) = %d, want %d", topic, got, want)
		}
	}
	es := readN(t, s, 6)
	for _, e := range es {
		s.Ack(e.Seq)
	}
	for _, topic := range []string{"a", "b", "c"} {
		if got := s.Pending(topic); got != 0 {
			t.Errorf("after every ack, Pending(%s) = %d", topic, got)
		}
	}
}

// ReadAppend adds to the caller's slice, in its spare room, and leaves
// what it held; after Close it returns the slice as it was.
func TestReadAppendAddsToTheSlice(t *testing.T) {
	s := open(t, spool.Options{})
	for _, v := range []string{"1", "2", "3"} {
		appendOne(t, s, rec("t", v))
	}
	dst := make([]spool.Entry, 1, 8)
	dst[0].Value = []byte("held")
	es, err := s.ReadAppend(context.Background(), dst, 2)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !slices.Equal(values(es), []string{"held", "1", "2"}) {
		t.Fatalf("read %v, want [held 1 2]", values(es))
	}
	if &es[0] != &dst[0] {
		t.Fatal("ReadAppend allocated a new slice although dst had room")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	es, err = s.ReadAppend(context.Background(), es[:1], 1)
	if !errors.Is(err, spool.ErrClosed) || !slices.Equal(values(es), []string{"held"}) {
		t.Fatalf("after Close: %v, %v; want [held], ErrClosed", values(es), err)
	}
}

// Files in the spool's directory that are not the spool's own (junk, a
// segment copied from another host under another name, a directory) are
// left alone, but not in silence: Open logs each by name, once.
func TestOpenLogsUnknownFiles(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	appendOne(t, s, rec("t", "x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	unknown := []string{"notes.txt", "00000000000000000000.seg.bak", "7.seg", "old"}
	for _, name := range unknown[:3] {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, unknown[3]), 0o755); err != nil {
		t.Fatal(err)
	}
	var log logBuffer
	s = open(t, spool.Options{Dir: dir, Log: log.logger()})
	if n := s.Stats().Replayed; n != 1 {
		t.Errorf("replayed %d entries, want 1", n)
	}
	text := log.String()
	for _, name := range unknown {
		if n := len(regexp.MustCompile(`file=`+regexp.QuoteMeta(filepath.Join(dir, name))+`\s`).FindAllString(text, -1)); n != 1 {
			t.Errorf("%s named %d times in the log, want once: %q", name, n, text)
		}
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v, want it left alone", name, err)
		}
	}
	for _, own := range []string{"lock", "acked", "00000000000000000000.seg"} {
		if regexp.MustCompile(regexp.QuoteMeta(filepath.Join(dir, own)) + `\s`).MatchString(text) {
			t.Errorf("the spool's own %s logged: %q", own, text)
		}
	}
}

// A directory in the spool directory named like a segment is not the
// spool's: left alone and logged, as other files are, not a failed start.
func TestOpenLeavesDirectoryNamedLikeSegment(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	appendOne(t, s, rec("t", "x"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "00000000000000000100.seg")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	var log logBuffer
	s, err := spool.Open(spool.Options{Dir: dir, Log: log.logger()})
	if err != nil {
		t.Fatalf("open with a directory named like a segment: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if got := values(readN(t, s, int(s.Stats().Replayed))); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("replayed %q, want [x]", got)
	}
	appendOne(t, s, rec("t", "y"))
	if fi, err := os.Stat(sub); err != nil || !fi.IsDir() {
		t.Fatalf("%s: %v, want it left alone", sub, err)
	}
	if !strings.Contains(log.String(), "file="+sub) {
		t.Fatalf("%s not logged: %q", sub, log.String())
	}
}
