package spool_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// The tests below re-execute the test binary as a child process that runs
// one of these instead of the tests.
const (
	childEnv    = "SPOOL_TEST_CHILD"
	childDirEnv = "SPOOL_TEST_DIR"
)

func TestMain(m *testing.M) {
	dir := os.Getenv(childDirEnv)
	switch mode := os.Getenv(childEnv); mode {
	case "":
		os.Exit(m.Run())
	case "append":
		childAppend(dir)
	case "fsize":
		childFileSizeLimit(dir)
	case "fsize-roll":
		childFullRoll(dir)
	case "fullfs":
		childFullFS(dir)
	case "rmrefused":
		childRemoveRefused(dir)
	case "rmfull":
		childRemoveRefusedFull(dir)
	case "rodir":
		childReadOnlyDir(dir)
	case "truncfail":
		childTruncateFails(dir, false, false)
	case "truncfail-nocreate":
		childTruncateFails(dir, true, false)
	case "truncfail-after":
		childTruncateFails(dir, false, true)
	case "truncfail-ackmark":
		childTruncateFailsMarkAcked(dir)
	case "truncfail-twice":
		childTruncateFailsTwice(dir)
	case "truncfail-nocreate-later":
		childTruncateFailsCreateLater(dir)
	case "truncfail-nocreate-pending":
		childTruncateFailsPending(dir, false)
	case "truncfail-nocreate-pending-wait":
		childTruncateFailsPending(dir, true)
	case "truncfail-roll":
		childTruncateFailsNewSegment(dir)
	case "truncfail-sealed":
		childSealedUncut(dir)
	case "rmopen":
		childRemoveRefusedAtOpen(dir)
	case "rmempty":
		childEmptyUnremovableAtOpen(dir)
	case "rmabove":
		childUnremovedAbove(dir)
	case "truncfail-taken":
		childTruncateFailsNameTaken(dir)
	case "syncfail":
		childSyncFails(dir)
	default:
		fmt.Fprintf(os.Stderr, "%s=%s: unknown child\n", childEnv, mode)
		os.Exit(2)
	}
	os.Exit(0)
}

func childFail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

// childAppend appends from 16 goroutines, some records alone and some in
// threes, and prints each record's value once its Append returned nil,
// until it is killed (or after 20000 appends).
func childAppend(dir string) {
	s, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 16 << 10})
	if err != nil {
		childFail("open: %v", err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; i < 1250; {
				n := 1 + 2*(i%2) // 1 or 3 records
				recs := make([]spool.Record, n)
				for j := range recs {
					recs[j] = rec("t", fmt.Sprintf("%d-%d", w, i+j))
				}
				if _, err := s.Append(recs); err != nil {
					childFail("append: %v", err)
				}
				var b strings.Builder
				for _, r := range recs {
					fmt.Fprintf(&b, "%s\n", r.Value)
				}
				mu.Lock()
				_, _ = os.Stdout.WriteString(b.String()) // one write: whole lines
				mu.Unlock()
				i += n
			}
		})
	}
	wg.Wait()
}

// startChild runs the test binary as child mode on dir and returns it with
// its standard output; it is killed and reaped at cleanup if still running.
// opts adjust the command before it starts.
func startChild(t *testing.T, mode, dir string, opts ...func(*exec.Cmd)) (*exec.Cmd, *bufio.Scanner, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+mode, childDirEnv+"="+dir)
	for _, o := range opts {
		o(cmd)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		if cmd.SysProcAttr != nil && cmd.SysProcAttr.Cloneflags != 0 {
			t.Fatalf("start child %s in namespaces of its own (the test needs unprivileged user namespaces): %v", mode, err)
		}
		t.Fatalf("start child %s: %v", mode, err)
	}
	timer := time.AfterFunc(60*time.Second, func() { _ = cmd.Process.Kill() })
	t.Cleanup(func() {
		timer.Stop()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, bufio.NewScanner(out), &stderr
}

// childLines runs the test binary as child mode on dir (as startChild) to
// its end and returns the lines it printed; the test fails if it did not
// exit 0.
func childLines(t *testing.T, mode, dir string, opts ...func(*exec.Cmd)) []string {
	t.Helper()
	cmd, out, stderr := startChild(t, mode, dir, opts...)
	var lines []string
	for out.Scan() {
		lines = append(lines, out.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child %s: %v; stderr %q", mode, err, stderr)
	}
	return lines
}

// A child appends, printing what was acknowledged, and is killed with
// SIGKILL mid-stream: Open finds every acknowledged record, once, each
// writer's in order.
func TestKill9(t *testing.T) {
	dir := t.TempDir()
	cmd, out, stderr := startChild(t, "append", dir)
	acked := map[string]bool{}
	for out.Scan() {
		acked[out.Text()] = true
		if len(acked) == 2000 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v, want killed by SIGKILL (acknowledged %d; stderr %q)", err, len(acked), stderr)
	}
	s := open(t, spool.Options{Dir: dir})
	st := s.Stats()
	es := readN(t, s, int(st.Replayed))
	readNone(t, s)
	found := map[string]bool{}
	last := map[int]int{}
	for _, e := range es {
		v := string(e.Value)
		if found[v] {
			t.Fatalf("%s found twice", v)
		}
		found[v] = true
		var w, i int
		if _, err := fmt.Sscanf(v, "%d-%d", &w, &i); err != nil {
			t.Fatalf("entry %q: %v", v, err)
		}
		if prev, ok := last[w]; ok && i <= prev {
			t.Fatalf("writer %d: record %d after %d", w, i, prev)
		}
		last[w] = i
	}
	var missing []string
	for v := range acked {
		if !found[v] {
			missing = append(missing, v)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged records missing after kill -9, e.g. %v", len(missing), missing[:min(len(missing), 10)])
	}
	t.Logf("acknowledged %d, found %d (in flight at the kill: %d), cut %d bytes", len(acked), len(found), len(found)-len(acked), st.Cut)
}

// limitFileSize lowers the file size limit to limit bytes (a full disk
// past it: writes fail with EFBIG); raise sets it back.
func limitFileSize(limit uint64) (raise func()) {
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		childFail("getrlimit: %v", err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: old.Max}); err != nil {
		childFail("setrlimit: %v", err)
	}
	return func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			childFail("setrlimit: %v", err)
		}
	}
}

// appendAfter sets the file size limit back with raise, appends "after",
// prints "after ERROR-OR-nil" and closes s.
func appendAfter(s *spool.Spool, raise func()) {
	raise()
	_, err := s.Append([]spool.Record{rec("t", "after")})
	fmt.Printf("after %v\n", err)
	if err := s.Close(); err != nil {
		childFail("close: %v", err)
	}
}

// childFileSizeLimit appends 600-byte records under a 20000-byte file size
// limit until an append fails, then raises the limit and appends once
// more. It prints "ok VALUE" per append that returned nil, then
// "fail EFBIG-or-not ERROR", "size SEGMENT-FILE-SIZE STATS-BYTES" and
// "after ERROR-OR-nil".
func childFileSizeLimit(dir string) {
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		childFail("open: %v", err)
	}
	raise := limitFileSize(20000)
	value := strings.Repeat("v", 600)
	for i := 0; ; i++ {
		v := fmt.Sprintf("%03d%s", i, value)
		if _, err = s.Append([]spool.Record{rec("t", v)}); err != nil {
			break
		}
		fmt.Printf("ok %s\n", v)
	}
	fmt.Printf("fail %v %v\n", errors.Is(err, syscall.EFBIG), strings.ReplaceAll(err.Error(), "\n", " "))
	var size int64
	for _, name := range segmentsIn(dir) {
		fi, err := os.Stat(name)
		if err != nil {
			childFail("stat: %v", err)
		}
		size += fi.Size()
	}
	fmt.Printf("size %d %d\n", size, s.Stats().Bytes)
	appendAfter(s, raise)
}

// A write past the file size limit (EFBIG, as a full disk's ENOSPC) fails
// the Append and leaves no partial entry; the entries before it are intact
// and appends work again once there is room.
func TestFileSizeLimit(t *testing.T) {
	dir := t.TempDir()
	cmd, out, stderr := startChild(t, "fsize", dir)
	var oks []string
	var lines []string
	for out.Scan() {
		if v, ok := strings.CutPrefix(out.Text(), "ok "); ok {
			oks = append(oks, v)
			continue
		}
		lines = append(lines, out.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v; stderr %q", err, stderr)
	}
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "fail true ") || lines[2] != "after <nil>" {
		t.Fatalf("child after %d appends: %q, want an EFBIG failure and an append that worked after", len(oks), lines)
	}
	var size, bytes int64
	if _, err := fmt.Sscanf(lines[1], "size %d %d", &size, &bytes); err != nil || size != bytes {
		t.Fatalf("child: %q: segment files and spool bytes differ after the failure: a partial entry was left", lines[1])
	}
	if len(oks) < 10 {
		t.Fatalf("only %d appends under a 20000-byte limit", len(oks))
	}
	s := open(t, spool.Options{Dir: dir})
	if vs := values(readN(t, s, len(oks)+1)); !slices.Equal(vs, append(oks, "after")) {
		t.Fatalf("read %d entries %.40q..., want the %d appended and after", len(vs), vs, len(oks))
	}
	readNone(t, s)
	if st := s.Stats(); st.Cut != 0 {
		t.Fatalf("open cut %d bytes", st.Cut)
	}
}

// childFullRoll fills most of a 16 KiB segment, then lowers the file size
// limit below any write (a full disk: every write fails with EFBIG) while
// 16 goroutines append 4 records of 1500 bytes at a time, 50 times each:
// the spool rolls with writes failing, first writes into new segments
// included. It prints "err ERROR" once per distinct error (EFBIG and any
// other), then raises the limit, appends once more and prints
// "after ERROR-OR-nil".
func childFullRoll(dir string) {
	s, err := spool.Open(spool.Options{Dir: dir, SegmentBytes: 16 << 10})
	if err != nil {
		childFail("open: %v", err)
	}
	value := strings.Repeat("v", 1500)
	for i := range 9 {
		if _, err := s.Append([]spool.Record{rec("t", fmt.Sprintf("%d%s", i, value))}); err != nil {
			childFail("append before the limit: %v", err)
		}
	}
	raise := limitFileSize(1000)
	var mu sync.Mutex
	seen := map[string]bool{}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				recs := make([]spool.Record, 4)
				for j := range recs {
					recs[j] = rec("t", value)
				}
				_, err := s.Append(recs)
				if err == nil {
					childFail("append past the file size limit worked")
				}
				// The file names differ; the reasons are what counts.
				msg := err.Error()
				if !errors.Is(err, syscall.EFBIG) {
					msg = "not EFBIG: " + msg
				} else {
					msg = "EFBIG"
				}
				mu.Lock()
				seen[msg] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for msg := range seen {
		fmt.Printf("err %s\n", strings.ReplaceAll(msg, "\n", " "))
	}
	appendAfter(s, raise)
}

// A full disk while segments roll: a first write into a new segment fails
// too, and the commit rolling again must not close that empty segment
// (its file would keep the name the next segment needs: every later
// Append would fail with "file exists"). Every failure is EFBIG, and
// appends work again once there is room.
func TestFullDiskWhileRolling(t *testing.T) {
	dir := t.TempDir()
	lines := childLines(t, "fsize-roll", dir)
	if !slices.Equal(lines, []string{"err EFBIG", "after <nil>"}) {
		t.Fatalf("child: %q, want only EFBIG failures and an append that worked after", lines)
	}
	s := open(t, spool.Options{Dir: dir})
	if es := readN(t, s, 10); string(es[9].Value) != "after" {
		t.Fatalf("10th entry %.20q, want after", es[9].Value)
	}
	readNone(t, s)
}
