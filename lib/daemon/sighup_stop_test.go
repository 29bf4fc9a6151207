package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// slowStop is a service whose stop takes until proceed is closed, and
// logs when it ends, as kproxy's "records not delivered" or ktransfer's
// abandoned pushes are logged at the end of a long stop.
type slowStop struct {
	log                        *slog.Logger
	running, stopping, proceed chan struct{}
	reloads                    atomic.Int32 // reloads requested (it is a Reloader, as ktransfer)
}

func (s *slowStop) RequestReload()                    { s.reloads.Add(1) }
func (s *slowStop) SetLevelFunc(func(level int) bool) {}

func (s *slowStop) Run(ctx context.Context) error {
	close(s.running)
	<-ctx.Done()
	close(s.stopping)
	<-s.proceed
	s.log.Info("stop finished")
	return nil
}

func (s *slowStop) Close() error { return nil }

// runSlowStop runs Main with a slowStop service logging into a directory
// of its own, and returns once the service runs: the service, the log's
// directory, and Main's exit code to come.
func runSlowStop(t *testing.T) (*slowStop, string, <-chan int) {
	t.Helper()
	dir := t.TempDir()
	svc := &slowStop{running: make(chan struct{}), stopping: make(chan struct{}), proceed: make(chan struct{})}
	p := Program[string]{
		Name: "test", DefaultFile: filepath.Join(dir, "test.yaml"),
		Load:    func(path string) (string, error) { return path, nil },
		Logging: func(string) (string, int) { return dir, 6 },
		New: func(_ context.Context, _ string, l *slog.Logger) (Service, error) {
			svc.log = l
			return svc, nil
		},
		Started: func(*slog.Logger, Service, string) {},
	}
	exit := make(chan int, 1)
	go func() { exit <- p.Main(nil) }()
	select {
	case <-svc.running:
	case <-time.After(10 * time.Second):
		t.Fatal("the service did not run within 10 s")
	}
	return svc, dir, exit
}

// TestSIGHUPDuringStopReopensTheLog attacks "SIGHUP reopens the log file":
// logrotate renames the log and sends SIGHUP while a stop is under way
// (a stop can take shutdown_timeout_ms and more). The lines the stop logs
// after that must go to the new file: the renamed one may be compressed
// and removed while still written to, and the stop's last lines, the ones
// that say what was not delivered, lost with it.
func TestSIGHUPDuringStopReopensTheLog(t *testing.T) {
	svc, dir, exit := runSlowStop(t)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-svc.stopping
	logFile := filepath.Join(dir, "test.log")
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reopen creates the file again; without it, the stop goes on
	// after this wait and its line shows where it went.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(logFile); err == nil {
			break
		}
	}
	close(svc.proceed)
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d after the stop, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return within 10 s of the end of the stop")
	}
	b, _ := os.ReadFile(logFile)
	if !strings.Contains(string(b), "stop finished") {
		old, _ := os.ReadFile(logFile + ".1")
		t.Errorf("the stop's last line is not in the log reopened at SIGHUP: %q; the renamed file has %q", b, old)
	}
	if n := svc.reloads.Load(); n != 0 {
		t.Errorf("%d reloads requested by a SIGHUP during the stop, want 0 (it only reopens the log)", n)
	}
}

// TestStuckReopenDoesNotHoldTheExit: a SIGHUP whose reopen never ends (the
// log path on a mount that does not answer; here a named pipe without a
// reader) must not keep the process from exiting once its stop finished:
// systemd would wait for TimeoutStopSec and kill it, its exit status lost.
func TestStuckReopenDoesNotHoldTheExit(t *testing.T) {
	svc, dir, exit := runSlowStop(t)
	close(svc.proceed)
	logFile := filepath.Join(dir, "test.log")
	if err := os.Rename(logFile, logFile+".1"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(logFile, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // ends the open left waiting
		if f, err := os.OpenFile(logFile, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			time.Sleep(100 * time.Millisecond)
			f.Close()
		}
	})
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reopen reaches its open of the pipe: a thread of this process
	// waits there for a reader (the kernel's wait_for_partner).
	for deadline := time.Now().Add(10 * time.Second); !openOfPipeWaits(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the reopen did not reach its open of the log within 10 s")
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Main did not return within 10 s of a finished stop: it waits for the stuck reopen")
	}
}

// openOfPipeWaits tells whether a thread of this process is blocked
// opening a named pipe that no reader has open.
func openOfPipeWaits() bool {
	tasks, _ := filepath.Glob("/proc/self/task/*/wchan")
	for _, task := range tasks {
		if w, err := os.ReadFile(task); err == nil && strings.TrimSpace(string(w)) == "wait_for_partner" {
			return true
		}
	}
	return false
}
