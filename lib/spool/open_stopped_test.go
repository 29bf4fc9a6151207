package spool_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
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

// stopAfter is a context that ends after its Err was asked n times: Open
// asks once before each segment, so it stops before segment n.
type stopAfter struct {
	context.Context
	n atomic.Int64
}

func (c *stopAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// TestOpenStoppedBetweenSegmentsLosesNothing: a stop after one, two or
// three segments were read (their garbage tails cut, as a whole Open cuts
// them; the watermark inside the first) leaves a spool from which the next Open
// replays exactly what it would have replayed from the untouched spool:
// the same seqs, the same values, in the same order.
func TestOpenStoppedBetweenSegmentsLosesNothing(t *testing.T) {
	for k := 1; k <= 3; k++ {
		t.Run(fmt.Sprintf("stopped before segment %d", k), func(t *testing.T) {
			dir := t.TempDir()
			o := spool.Options{Dir: dir, SegmentBytes: 4 << 10}
			s := open(t, o)
			for i := range 12 { // 3 entries a segment
				appendOne(t, s, spool.Record{Topic: "t", Value: []byte(fmt.Sprintf("%03d", i) + strings.Repeat("v", 1200))})
			}
			s.Ack(0, 1) // the watermark (Close writes it) inside the first segment
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
			if len(segs) != 4 {
				t.Fatalf("%d segments, want 4", len(segs))
			}
			for _, g := range segs[:len(segs)-1] { // garbage after the entries of every segment but the last
				f, err := os.OpenFile(g, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.Write([]byte("garbage-garbage-garbage"))
				f.Close()
			}
			untouched := filepath.Join(t.TempDir(), "untouched")
			if err := os.Mkdir(untouched, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, b := range dirContents(t, dir) {
				if err := os.WriteFile(filepath.Join(untouched, name), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}

			ctx := &stopAfter{Context: context.Background()}
			ctx.n.Store(int64(k))
			if s, err := spool.OpenContext(ctx, o); !errors.Is(err, context.Canceled) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("OpenContext stopped before segment %d: %v, want context.Canceled", k, err)
			}

			want := replayAll(t, spool.Options{Dir: untouched, SegmentBytes: o.SegmentBytes})
			if got := replayAll(t, o); !slices.Equal(got, want) {
				t.Errorf("after a stop before segment %d the spool replays\n%q\nwant (the untouched spool's)\n%q", k, got, want)
			}
		})
	}
}

// replayAll opens the spool and reads every pending entry: "seq:first
// three bytes of the value", in order.
func replayAll(t *testing.T, o spool.Options) []string {
	t.Helper()
	s := open(t, o)
	n := int(s.Stats().Records)
	var got []string
	for _, e := range readN(t, s, n) {
		got = append(got, fmt.Sprintf("%d:%s", e.Seq, e.Value[:3]))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return got
}
