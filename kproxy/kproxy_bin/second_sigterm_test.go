package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// stopping is a kproxy_bin whose one request in flight waits for the
// broker (its produce request held until release), for the stop tests.
type stopping struct {
	cmd      *exec.Cmd
	exited   <-chan struct{}
	stderr   *bintest.Output
	dir      string
	release  func()   // the broker answers the held produce request
	answered chan int // the request's status, 0 for none
}

// startStopping starts kproxy_bin with produce_timeout_ms and
// shutdown_timeout_ms of timeoutMs and returns once a request's produce
// request is held at the broker.
func startStopping(t *testing.T, timeoutMs int) *stopping {
	t.Helper()
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	s := &stopping{dir: t.TempDir(), answered: make(chan int, 1)}
	port := freePort(t)
	cfg := fmt.Sprintf("log_dir: %s\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\n"+
		"read_timeout_ms: 2000\nwrite_timeout_ms: 2000\nbroker_hosts: [%s]\n"+
		"produce_timeout_ms: %d\nshutdown_timeout_ms: %d\n", filepath.Join(s.dir, "log"), port, c.ListenAddrs()[0], timeoutMs, timeoutMs)
	f := filepath.Join(s.dir, "kproxy.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s.cmd, s.stderr = bintest.Start(t, binary(t), "-f", f)
	s.exited = bintest.Exited(t, s.cmd)
	url := fmt.Sprintf("http://127.0.0.1:%d/commit?topic=t&key=k", port)
	bintest.AwaitServing(t, s.cmd, s.exited, bintest.StartWithin, s.stderr, bintest.LogFile(filepath.Join(s.dir, "log", "kproxy.log")), func() error {
		return bintest.Answers200(http.Post(url, "", bytes.NewReader([]byte{0x01})))
	})

	release := make(chan struct{})
	var once sync.Once
	s.release = func() { once.Do(func() { close(release) }) }
	t.Cleanup(s.release)
	var held atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if held.Add(1) == 1 {
			c.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	go func() {
		resp, err := (&http.Client{Timeout: 2 * time.Duration(timeoutMs) * time.Millisecond}).Post(url, "", bytes.NewReader([]byte{0x02}))
		if err != nil {
			s.answered <- 0
			return
		}
		resp.Body.Close()
		s.answered <- resp.StatusCode
	}()
	waitFor(t, 30*time.Second, "the request's produce request at the broker", func() bool { return held.Load() > 0 })
	return s
}

func (s *stopping) signal(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// TestSecondSIGTERMEndsALongStop: a stop waits for the requests in flight
// up to shutdown_timeout_ms (here 60 s: a broker sits on their produce
// requests). An operator who sends SIGTERM again does not want to wait
// that long (nor systemd's TimeoutStopSec and its SIGKILL): the second one
// ends the process at once, logged, exit status 1. Shared by the three
// binaries (their main function).
func TestSecondSIGTERMEndsALongStop(t *testing.T) {
	s := startStopping(t, 60000)
	s.signal(t)
	// The stop began once it is logged; a second signal within 1 s of the
	// first one's handling is the same stop, so the second comes 1.5 s
	// after that, however late the first was handled on a loaded machine.
	logFile := filepath.Join(s.dir, "log", "kproxy.log")
	waitFor(t, 30*time.Second, "the stop's start in the log", func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), `msg="shutting down"`)
	})
	select {
	case <-s.exited:
		t.Fatalf("exited at the first SIGTERM with a request in flight: %v; stderr: %s", s.cmd.ProcessState, s.stderr)
	case <-time.After(1500 * time.Millisecond): // the stop waits for the request
	}
	s.signal(t)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5 s after a second SIGTERM; stderr: %s", s.stderr)
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit %d after a second SIGTERM, want 1 (the stop did not finish)", code)
	}
	logText, _ := os.ReadFile(filepath.Join(s.dir, "log", "kproxy.log"))
	if !strings.Contains(string(logText), "second stop signal") || !strings.Contains(s.stderr.String(), "second stop signal") {
		t.Errorf("the forced exit is not logged; stderr: %s\nlog:\n%s", s.stderr, logText)
	}
}

// TestStopSignalSentTwiceAtOnceDrains: a unit with ExecStop=/bin/kill
// -TERM $MAINPID has systemd send its KillSignal right after that kill
// returns, and GNU timeout signals the process and then its process group:
// two SIGTERMs a few milliseconds apart, one stop asked for. The stop
// drains as ever: the request in flight is answered, exit status 0.
func TestStopSignalSentTwiceAtOnceDrains(t *testing.T) {
	s := startStopping(t, 30000)
	s.signal(t)
	time.Sleep(20 * time.Millisecond) // systemd's KillSignal after ExecStop's kill
	s.signal(t)
	time.Sleep(1500 * time.Millisecond)
	s.release() // the broker answers: the stop can finish
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20 s after the produce request was answered; stderr: %s", s.stderr)
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after two SIGTERMs 20 ms apart, want 0 (one stop, drained); stderr: %s", code, s.stderr)
	}
	select {
	case code := <-s.answered:
		if code != 200 {
			t.Errorf("the request in flight at the stop: %d, want 200 (drained)", code)
		}
	case <-time.After(5 * time.Second):
		t.Error("the request in flight at the stop was never answered")
	}
}
