package spool_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// The active segment's file runs ahead of its entries with zeros, and a
// write inside them is synced with fdatasync: the appends after the first
// of a segment change neither the file's size nor its blocks.
func TestWritesInsideZerosAheadSyncData(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	appendOne(t, s, rec("t", "first"))
	files := segmentsIn(dir)
	if len(files) != 1 {
		t.Fatalf("segments %v, want one", files)
	}
	st := s.Stats()
	if size := fileSize(t, files[0]); st.Ahead == 0 || size != st.Bytes+st.Ahead {
		t.Fatalf("segment file of %d bytes, stats %+v: want the entry and zeros ahead of it", size, st)
	}
	syncs, data := spool.Fsyncs(), spool.DataSyncs()
	for i := range 100 {
		appendOne(t, s, rec("t", fmt.Sprintf("v%03d", i)))
	}
	if n, d := spool.Fsyncs()-syncs, spool.DataSyncs()-data; n != 100 || d != 100 {
		t.Fatalf("100 appends inside the zeros ahead: %d group commits, %d of them fdatasyncs; want 100 and 100", n, d)
	}
}

// A process that stops without Close (a crash, kill -9) leaves zeros after
// the entries of its last segment. They are not entries: Open finds every
// entry, drops the zeros without a warning and counts them apart from a
// torn or corrupt tail. Close cuts the file back to its entries.
func TestZerosAheadAreNotEntries(t *testing.T) {
	dir := t.TempDir()
	s := open(t, spool.Options{Dir: dir})
	var want []string
	for i := range 50 {
		v := fmt.Sprintf("v%03d", i)
		appendOne(t, s, rec("t", v))
		want = append(want, v)
	}
	st := s.Stats()
	if st.Ahead == 0 {
		t.Fatalf("stats %+v: no zeros ahead of the entries", st)
	}
	// The files as a crash would leave them: the spool still open.
	crashed := t.TempDir()
	for _, name := range segmentsIn(dir) {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, filepath.Base(name)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var log bytes.Buffer
	c := open(t, spool.Options{Dir: crashed, Log: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	cst := c.Stats()
	if vs := values(readN(t, c, len(want))); !slices.Equal(vs, want) {
		t.Fatalf("read %q after the crash, want %q", vs, want)
	}
	readNone(t, c)
	if cst.Cut != 0 || cst.Trimmed != st.Ahead || cst.Bytes != st.Bytes {
		t.Fatalf("open after the crash: stats %+v, want %d bytes of entries, %d bytes of zeros trimmed and nothing cut", cst, st.Bytes, st.Ahead)
	}
	if strings.Contains(log.String(), "level=WARN") {
		t.Fatalf("open after the crash warned: %s", log.String())
	}
	// Said, with the place: entries a disk lost would look the same.
	if want := fmt.Sprintf("offset=%d bytes=%d", st.Bytes, st.Ahead); !strings.Contains(log.String(), "dropped the zeros") || !strings.Contains(log.String(), want) {
		t.Fatalf("open after the crash logged %q, want the zeros dropped at %s", log.String(), want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if size := fileSize(t, segmentsIn(dir)[0]); size != st.Bytes {
		t.Fatalf("segment file of %d bytes after Close, want its %d bytes of entries", size, st.Bytes)
	}
}

// Stats counts the zeros ahead of the active segment's entries only: while
// the collection removes an acked active segment, a kept older segment
// never shows them.
func TestAheadCountsOnlyTheActiveSegment(t *testing.T) {
	var bad atomic.Int64
	var sample atomic.Value
	for range 100 {
		dir := t.TempDir()
		s := open(t, spool.Options{Dir: dir, SegmentBytes: 4000})
		appendOne(t, s, rec("t", "a")) // kept: never acked
		kept := s.Stats().Bytes
		b := appendOne(t, s, rec("t", strings.Repeat("b", 5000))) // alone, past the roll
		c := appendOne(t, s, rec("t", "c"))                       // the active segment, zeros ahead
		readN(t, s, 3)
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if st := s.Stats(); st.Ahead > 0 && st.Bytes == kept {
					bad.Add(1)
					sample.Store(st)
				}
			}
		}()
		s.Ack(b, c)
		waitFor(t, "the acked segments' removal", func() bool { return s.Stats().Bytes == kept })
		close(stop)
		<-done
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d samples counted zeros ahead against the kept segment, e.g. %+v", n, sample.Load())
	}
}
