package spool_test

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// childSyncFails appends one record at a time from 16 goroutines; once
// 1000 were acknowledged, every fdatasync of the process fails (EIO: a
// disk that fails its flushes) while they go on, 100 appends each. It
// prints "ok V" for each record whose Append returned nil and "err V" for
// the others, and exits without closing the spool (a crash). The group
// commits written inside the zeros ahead are synced with fdatasync, and
// fail; the ones that pass the zeros are synced with fsync, and work.
func childSyncFails(dir string) {
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		childFail("open: %v", err)
	}
	var mu sync.Mutex
	var acked atomic.Int64
	var deny sync.Once
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := range 100 {
				v := fmt.Sprintf("%d-%d", w, i)
				_, err := s.Append([]spool.Record{rec("t", v)})
				line := "ok " + v + "\n"
				if err != nil {
					if !strings.Contains(err.Error(), "input/output error") {
						childFail("append %s: %v, want the sync's EIO", v, err)
					}
					line = "err " + v + "\n"
				} else if acked.Add(1) == 1000 {
					deny.Do(func() { denySyscalls(unix.SYS_FDATASYNC) })
				}
				mu.Lock()
				_, _ = os.Stdout.WriteString(line)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	os.Exit(0) // no Close: a crash
}

// Concurrent Appends while the disk fails its flushes: every record
// answered written is replayed after the crash, each writer's in order,
// and no record answered not written comes back (kproxy answered it 503:
// the drain must not send it).
func TestSyncFailuresAnswerWhatIsOnDisk(t *testing.T) {
	dir := t.TempDir()
	ok, failed := map[string]bool{}, 0
	for _, l := range childLines(t, "syncfail", dir) {
		state, v, _ := strings.Cut(l, " ")
		ok[v] = state == "ok"
		if state != "ok" {
			failed++
		}
	}
	if len(ok) != 1600 || failed == 0 {
		t.Fatalf("child answered %d appends, %d failed; want 1600, some failed", len(ok), failed)
	}
	s := open(t, spool.Options{Dir: dir})
	replayed := values(readN(t, s, int(s.Stats().Replayed)))
	readNone(t, s)
	last, found := map[int]int{}, map[string]bool{}
	for _, v := range replayed {
		found[v] = true
		if !ok[v] {
			t.Fatalf("%s replayed, answered not written (of %d replayed, %d failed)", v, len(replayed), failed)
		}
		var w, i int
		if _, err := fmt.Sscanf(v, "%d-%d", &w, &i); err != nil {
			t.Fatalf("entry %q: %v", v, err)
		}
		if p, seen := last[w]; seen && p >= i {
			t.Fatalf("writer %d: %d replayed after %d", w, i, p)
		}
		last[w] = i
	}
	for v, written := range ok {
		if written && !found[v] {
			t.Fatalf("%s answered written, not replayed (of %d replayed, %d failed)", v, len(replayed), failed)
		}
	}
}
