// Package bintest helps tests run the project's binaries as processes.
package bintest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	mu    sync.Mutex
	built = map[string]string{}
	dir   string
)

// Output collects what a process writes; it may be read while the
// process still writes (os/exec copies into it from a goroutine of its
// own).
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// String returns what was written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// Start runs the binary with args, its standard error collected in the
// returned Output, and kills and reaps it at cleanup if it is still
// running (a test that waited for it already is not disturbed).
func Start(t testing.TB, bin string, args ...string) (*exec.Cmd, *Output) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr := &Output{}
	cmd.Stderr = stderr
	// The process dies with the test process, even when that ends
	// without its cleanups (a test timed out).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, stderr
}

// Build compiles the main package in pkgDir (relative to the test's
// working directory, "." for the package under test) once per test
// process and returns the binary's path.
func Build(t testing.TB, pkgDir string) string {
	t.Helper()
	abs, err := filepath.Abs(pkgDir)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if bin, ok := built[abs]; ok {
		return bin
	}
	if dir == "" {
		removeEnded()
		if dir, err = os.MkdirTemp("", fmt.Sprintf("bintest-%d-", os.Getpid())); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, filepath.Base(abs))
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = abs
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v", fmt.Errorf("go build %s: %v\n%s", pkgDir, err, out))
	}
	built[abs] = bin
	return bin
}

// removeEnded removes the binaries built by test processes that ended:
// a test process has no moment to remove its own after its last test (and
// none at all when a test times out), so each removes those left by the
// ones before it. Their directories are named after their pid.
func removeEnded() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "bintest-*-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.Split(filepath.Base(d), "-")[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// FreePorts returns the first of n consecutive loopback ports that are
// free now, for a process the test starts to listen on. They are taken
// below Linux's ephemeral range (32768-60999): a port the kernel hands to a
// connection of another test running meanwhile (one given by listening on
// port 0, then closed, is one of those) would be taken before the process
// binds it.
func FreePorts(t testing.TB, n int) int {
	t.Helper()
	for range 200 {
		first := 20000 + rand.IntN(12000-n)
		var held []net.Listener
		for i := range n {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(first+i)))
			if err != nil {
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if len(held) == n {
			return first
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

// FreePort returns a loopback port free now (FreePorts).
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)
}

// LogFIFO is a log file made a named pipe, so that a test can hold a
// process between reading its configuration and opening its log: the
// process's open of the pipe blocks until the test opens it for reading.
type LogFIFO struct {
	t    testing.TB
	path string
}

// NewLogFIFO makes path, the log file a process is about to open, a named
// pipe.
func NewLogFIFO(t testing.TB, path string) *LogFIFO {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatalf("mkfifo %s: %v", path, err)
	}
	return &LogFIFO{t: t, path: path}
}

// WaitBlocked returns once a thread of cmd's process is blocked opening a
// named pipe no reader has open (the kernel's wait_for_partner), at most
// StartWithin: that comes after its start and the reading of its
// configuration. It fails at once, with the exit status and stderr, when
// exited is closed first (the process ended).
func (l *LogFIFO) WaitBlocked(cmd *exec.Cmd, exited <-chan struct{}, stderr *Output) {
	l.t.Helper()
	deadline := time.Now().Add(StartWithin)
	for {
		select {
		case <-exited:
			l.t.Fatalf("%s ended before opening its log %s: %v; stderr: %s", filepath.Base(cmd.Path), l.path, cmd.ProcessState, stderr)
		default:
		}
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", cmd.Process.Pid))
		for _, task := range tasks {
			if w, err := os.ReadFile(task); err == nil && strings.TrimSpace(string(w)) == "wait_for_partner" {
				return
			}
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s not blocked opening its log %s within %v; stderr: %s", filepath.Base(cmd.Path), l.path, StartWithin, stderr)
		}
		time.Sleep(time.Millisecond)
	}
}

// Open opens the pipe for reading, which lets the process's open return,
// and collects what the process logs from then on into the returned
// Output. It waits at most 10 s for the process to open the pipe, and
// fails the test if exited is closed first (the process ended).
func (l *LogFIFO) Open(exited <-chan struct{}) *Output {
	t := l.t
	t.Helper()
	type result struct {
		f   *os.File
		err error
	}
	res := make(chan result, 1)
	go func() {
		f, err := os.OpenFile(l.path, os.O_RDONLY, 0) // returns once a writer opened it
		res <- result{f, err}
	}()
	release := func() { // the open above: a reader waiting counts as one
		if w, err := os.OpenFile(l.path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		if r := <-res; r.f != nil {
			r.f.Close()
		}
	}
	var r result
	select {
	case r = <-res:
	case <-exited:
		release()
		t.Fatalf("the process ended before it opened its log %s", l.path)
	case <-time.After(10 * time.Second):
		release()
		t.Fatalf("the process did not open its log %s within 10 s", l.path)
	}
	if r.err != nil {
		t.Fatalf("open %s: %v", l.path, r.err)
	}
	out := &Output{}
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(out, r.f); close(copied) }()
	t.Cleanup(func() {
		r.f.Close()
		<-copied
	})
	return out
}

// Exited waits for cmd in the background: the channel is closed once the
// process has ended (cmd.ProcessState is then set). At cleanup a process
// still running is killed and waited for.
func Exited(t testing.TB, cmd *exec.Cmd) <-chan struct{} {
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	return exited
}

// StopWithin sends cmd SIGTERM and fails the test unless the process
// ends within d with status 0. why says what the stop came during, for
// the messages; stderr is the process's standard error.
func StopWithin(t testing.TB, cmd *exec.Cmd, exited <-chan struct{}, d time.Duration, why string, stderr *Output) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(d):
		t.Fatalf("still running %v after a SIGTERM %s; stderr: %s", d, why, stderr)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d (%v) after a SIGTERM %s, want 0; stderr: %s", code, cmd.ProcessState, why, stderr)
	}
}

// StartWithin bounds a test's wait for a process it started to serve: a
// start on a loaded machine (the race detector, other packages' tests
// running beside) can take tens of seconds, and its time is not what the
// tests check. A start that fails ends the process, which the waits see at
// once.
const StartWithin = 60 * time.Second

// AwaitServing polls ready every 20 ms until it returns nil, and fails the
// test when the process ends first or within passes, with its exit status,
// stderr and logged (what it wrote to its log: an Output, a LogFile, or nil
// when its log is stderr).
func AwaitServing(t testing.TB, cmd *exec.Cmd, exited <-chan struct{}, within time.Duration, stderr *Output, logged fmt.Stringer, ready func() error) {
	t.Helper()
	if logged == nil {
		logged = LogFile("")
	}
	deadline := time.Now().Add(within)
	for {
		select {
		case <-exited:
			t.Fatalf("%s ended before serving: %v; stderr: %s; log: %s", filepath.Base(cmd.Path), cmd.ProcessState, stderr, logged)
		default:
		}
		err := ready()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not serve within %v: %v; stderr: %s; log: %s", filepath.Base(cmd.Path), within, err, stderr, logged)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LogFile is the path of a process's log file; its String is what the file
// holds now (nothing when it cannot be read), for a failure's message.
type LogFile string

func (f LogFile) String() string {
	if f == "" {
		return ""
	}
	b, err := os.ReadFile(string(f))
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(b)
}

// Answers200 is nil for an HTTP answer 200 (its body closed), else the
// error or the status: a readiness probe for AwaitServing.
func Answers200(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}
