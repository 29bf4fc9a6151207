package spool_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// The last (active) segment becomes fully acked while the loop writes the
// watermark to remove an older one: it stays the segment appends go to, so
// an entry appended next is read, counted and replayed. (It used to be
// dropped from the spool's segments but kept open for writing: later
// entries were acknowledged to the caller, never read, and cut at the next
// Open.) The timing is varied over many rounds to hit that window.
func TestAckDuringCollectKeepsActiveSegment(t *testing.T) {
	for round := range 300 {
		dir := t.TempDir()
		s := open(t, spool.Options{Dir: dir, SegmentBytes: 200})
		a := appendOne(t, s, rec("t", string(make([]byte, 300)))) // segment A, past the roll size
		b := appendOne(t, s, rec("t", "b"))                       // segment B, active
		readN(t, s, 2)
		s.Ack(a) // the loop removes A, writing the watermark first
		time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
		s.Ack(b)                          // maybe during that write
		time.Sleep(20 * time.Millisecond) // the loop collects
		c := appendOne(t, s, rec("t", "c"))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		es, err := s.Read(ctx, 1)
		cancel()
		if err != nil || len(es) != 1 || es[0].Seq != c {
			t.Fatalf("round %d: entry %d appended after %d and %d were acked: read %d entries, err %v; stats %+v", round, c, a, b, len(es), err, s.Stats())
		}
		if st := s.Stats(); st.Records != 1 || s.Pending("t") != 1 {
			t.Fatalf("round %d: stats %+v, pending %d; want 1 record", round, st, s.Pending("t"))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, spool.Options{Dir: dir})
		if es := readN(t, s, 1); es[0].Seq != c || string(es[0].Value) != "c" {
			t.Fatalf("round %d: replayed %d %q, want %d c", round, es[0].Seq, es[0].Value, c)
		}
		if st := s.Stats(); st.Replayed != 1 {
			t.Fatalf("round %d: stats after reopen %+v, want 1 replayed", round, st)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// 8 appenders and a reader that acks everything it reads (each batch in
// reverse), with segments of a few entries: segments roll and go all the
// time. Then Close and Open: every appended entry was either read and
// acked or is replayed, with its seq; none is missing, none acked comes
// back, and the counts match the files.
func TestAppendReadAckStress(t *testing.T) {
	const writers = 8
	run := 3 * time.Second
	dir := t.TempDir()
	o := spool.Options{Dir: dir, SegmentBytes: 3 * entrySize(t, rec("t0", "0-00000"))}
	s := open(t, o)

	var mu sync.Mutex
	appended := map[uint64]string{} // seq: value, for every Append that returned nil
	acked := map[uint64]bool{}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var readers sync.WaitGroup
	readers.Go(func() {
		var next uint64 // the next seq Read must return
		for {
			es, err := s.Read(ctx, 1+rand.IntN(8))
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					t.Errorf("read: %v", err)
				}
				return
			}
			seqs := make([]uint64, len(es))
			for i, e := range es {
				if e.Seq < next {
					t.Errorf("read seq %d after %d", e.Seq, next-1)
					return
				}
				next = e.Seq + 1
				seqs[len(es)-1-i] = e.Seq
			}
			s.Ack(seqs...)
			mu.Lock()
			for _, q := range seqs {
				acked[q] = true
			}
			mu.Unlock()
		}
	})
	var writersWG sync.WaitGroup
	stop := time.Now().Add(run)
	for w := range writers {
		writersWG.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				v := fmt.Sprintf("%d-%05d", w, i)
				seq, err := s.Append([]spool.Record{rec(fmt.Sprint("t", w%2), v)})
				if err != nil {
					t.Errorf("append %s: %v", v, err)
					return
				}
				mu.Lock()
				appended[seq] = v
				mu.Unlock()
			}
		})
	}
	writersWG.Wait()
	// The reader catches up, then stops; what it read is acked.
	waitFor(t, "the reader to ack everything", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) == len(appended)
	})
	cancel()
	readers.Wait()
	if t.Failed() {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	for q := range acked {
		if _, ok := appended[q]; !ok {
			t.Fatalf("read seq %d, never appended", q)
		}
	}
	waitFor(t, "the acked segments' removal", func() bool {
		st := s.Stats()
		return st.Records == 0 && st.Bytes+st.Ahead == bytesOnDisk(t, dir) && s.Pending("t0")+s.Pending("t1") == 0
	})
	// A last round appended after the reader stopped: pending at Close.
	var tail []uint64
	for i := range 10 {
		v := fmt.Sprintf("tail-%d", i)
		q := appendOne(t, s, rec("t0", v))
		appended[q] = v
		tail = append(tail, q)
	}
	if st := s.Stats(); st.Records != int64(len(tail)) || st.Bytes+st.Ahead != bytesOnDisk(t, dir) || st.Appended != int64(len(appended)) || st.Acked != int64(len(acked)) {
		t.Fatalf("stats %+v before close: want %d records, %d bytes in segment files (entries and zeros ahead), %d appended, %d acked", st, len(tail), bytesOnDisk(t, dir), len(appended), len(acked))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, o)
	st := s.Stats()
	es := readN(t, s, int(st.Replayed))
	readNone(t, s)
	var got []uint64
	for _, e := range es {
		if v, ok := appended[e.Seq]; !ok || v != string(e.Value) {
			t.Fatalf("replayed seq %d %q: appended as %q", e.Seq, e.Value, v)
		}
		got = append(got, e.Seq)
	}
	if !slices.Equal(got, tail) {
		t.Fatalf("replayed seqs %v, want the %d appended after the reader stopped: %v", got, len(tail), tail)
	}
	if st.Records != int64(len(tail)) || st.Bytes != bytesOnDisk(t, dir) || s.Pending("t0") != len(tail) {
		t.Fatalf("stats after reopen %+v, pending %d: want %d records, %d bytes in segment files", st, s.Pending("t0"), len(tail), bytesOnDisk(t, dir))
	}
	t.Logf("%d appended in %v from %d goroutines, %d read and acked, %d replayed", len(appended), run, writers, len(acked), len(es))
}

func bytesOnDisk(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	for _, name := range segmentsIn(dir) {
		fi, err := os.Stat(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Removed since dir was listed (an acked segment, in the
			// background): no bytes on disk.
		case err != nil:
			t.Fatal(err)
		default:
			n += fi.Size()
		}
	}
	return n
}

// heldDeleted lists the files of dir this process holds open though they
// were removed: their disk space is not given back while they are.
func heldDeleted(t testing.TB, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(link, dir+"/") && strings.HasSuffix(link, " (deleted)") {
			held = append(held, link)
		}
	}
	return held
}

// Once every entry is read and acked, the segments are removed and their
// disk space given back, while the reader waits for more (as kproxy's
// drain does): the reader holds no removed segment open. It held the last
// segment read, up to the roll size on disk past spool_max_bytes, until
// the next record was appended.
func TestDrainedSegmentNotHeldOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	for i := range 3 {
		appendOne(t, s, rec("t", fmt.Sprintf("%02d", i)))
	}
	es := readN(t, s, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	waited := make(chan error, 1)
	go func() {
		_, err := s.Read(ctx, 10) // waits: nothing more to read
		waited <- err
	}()
	for _, e := range es {
		s.Ack(e.Seq)
	}
	waitFor(t, "the drained segment's removal", func() bool { return len(segmentsIn(dir)) == 0 })
	deadline := time.Now().Add(10 * time.Second)
	for held := heldDeleted(t, dir); len(held) > 0; held = heldDeleted(t, dir) {
		if time.Now().After(deadline) {
			t.Fatalf("the spool is empty and the reader waits, but holds removed segments open: %v", held)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("the waiting read: %v", err)
	}
	appendOne(t, s, rec("t", "new"))
	if vs := values(readN(t, s, 1)); vs[0] != "new" {
		t.Fatalf("read %v, want [new]", vs)
	}
}
