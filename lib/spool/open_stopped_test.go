package spool_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestOpenStoppedLeavesTheSpoolAsItWas: OpenContext whose context ends
// (kproxy stopped while it reads a large spool at start) gives up before
// the next segment and changes nothing on disk — not the torn tail a
// whole Open cuts, not the watermark, no segment — so that the next Open
// replays every entry, as if the stopped one had not run.
func TestOpenStoppedLeavesTheSpoolAsItWas(t *testing.T) {
	dir := t.TempDir()
	s, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	value := []byte(strings.Repeat("v", 1200)) // 3 entries a segment
	for range 6 {
		if _, err := s.Append([]spool.Record{{Topic: "t", Key: []byte("k"), Value: value}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 2 {
		t.Fatalf("%d segments, want 2", len(segs))
	}
	f, err := os.OpenFile(segs[1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("torn")) // a whole Open cuts it
	f.Close()
	before := dirContents(t, dir)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if s, err := spool.OpenContext(ctx, spool.Options{Dir: dir, SegmentBytes: 4 << 10}); !errors.Is(err, context.Canceled) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("OpenContext with its context ended: %v, want context.Canceled", err)
	}
	if after := dirContents(t, dir); !maps.EqualFunc(before, after, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Errorf("stopped Open changed the spool: files before %v, after %v", fileSizes(before), fileSizes(after))
	}

	s, err = spool.Open(spool.Options{Dir: dir, SegmentBytes: 4 << 10})
	if err != nil {
		t.Fatalf("open after the stopped one: %v", err)
	}
	defer s.Close()
	if st := s.Stats(); st.Replayed != 6 || st.Cut != 4 {
		t.Errorf("open after the stopped one: %+v, want 6 replayed and the torn 4 bytes cut", st)
	}
}

// dirContents is every file of dir by name.
func dirContents(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range ents {
		if files[e.Name()], err = os.ReadFile(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

// fileSizes is the name and size of every file, for a message.
func fileSizes(files map[string][]byte) map[string]int {
	sizes := map[string]int{}
	for name, b := range files {
		sizes[name] = len(b)
	}
	return sizes
}
