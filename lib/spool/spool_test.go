package spool_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
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

func segments(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
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

