package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
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

// TestSecondSIGTERMEndsALongStop: a stop waits for the requests in flight
// up to shutdown_timeout_ms (here 60 s: a broker sits on their produce
// requests). An operator who sends SIGTERM again does not want to wait
// that long (nor systemd's TimeoutStopSec and its SIGKILL): the second one
// ends the process at once, logged, exit status 1. Shared by the three
// binaries (their main function).
func TestSecondSIGTERMEndsALongStop(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	dir := t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf("log_dir: %s\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\n"+
		"read_timeout_ms: 2000\nwrite_timeout_ms: 2000\nbroker_hosts: [%s]\n"+
		"produce_timeout_ms: 60000\nshutdown_timeout_ms: 60000\n", filepath.Join(dir, "log"), port, c.ListenAddrs()[0])
	f := filepath.Join(dir, "kproxy.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, stderr := bintest.Start(t, binary(t), "-f", f)
	exited := bintest.Exited(t, cmd)
	url := fmt.Sprintf("http://127.0.0.1:%d/commit?topic=t&key=k", port)
	bintest.AwaitServing(t, cmd, exited, 20*time.Second, stderr, nil, func() error {
		return bintest.Answers200(http.Post(url, "", bytes.NewReader([]byte{0x01})))
	})

	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var held atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		held.Add(1)
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	go func() {
		if resp, err := (&http.Client{Timeout: 90 * time.Second}).Post(url, "", bytes.NewReader([]byte{0x02})); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, 10*time.Second, "the request's produce request at the broker", func() bool { return held.Load() > 0 })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		t.Fatalf("exited at the first SIGTERM with a request in flight: %v; stderr: %s", cmd.ProcessState, stderr)
	case <-time.After(1500 * time.Millisecond): // the stop waits for it; a second signal within 1 s is the same stop
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5 s after a second SIGTERM; stderr: %s", stderr)
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit %d after a second SIGTERM, want 1 (the stop did not finish)", code)
	}
	logText, _ := os.ReadFile(filepath.Join(dir, "log", "kproxy.log"))
	if !strings.Contains(string(logText), "second stop signal") || !strings.Contains(stderr.String(), "second stop signal") {
		t.Errorf("the forced exit is not logged; stderr: %s\nlog:\n%s", stderr, logText)
	}
}

// TestStopSignalSentTwiceAtOnceDrains: a unit with ExecStop=/bin/kill
// -TERM $MAINPID has systemd send its KillSignal right after that kill
// returns, and GNU timeout signals the process and then its process group:
// two SIGTERMs a few milliseconds apart, one stop asked for. The stop
// drains as ever: the request in flight is answered, exit status 0.
func TestStopSignalSentTwiceAtOnceDrains(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	dir := t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf("log_dir: %s\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\n"+
		"read_timeout_ms: 2000\nwrite_timeout_ms: 2000\nbroker_hosts: [%s]\n"+
		"produce_timeout_ms: 30000\nshutdown_timeout_ms: 30000\n", filepath.Join(dir, "log"), port, c.ListenAddrs()[0])
	f := filepath.Join(dir, "kproxy.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, stderr := bintest.Start(t, binary(t), "-f", f)
	exited := bintest.Exited(t, cmd)
	url := fmt.Sprintf("http://127.0.0.1:%d/commit?topic=t&key=k", port)
	bintest.AwaitServing(t, cmd, exited, 20*time.Second, stderr, nil, func() error {
		return bintest.Answers200(http.Post(url, "", bytes.NewReader([]byte{0x01})))
	})

	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	var held atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if held.Add(1) == 1 {
			c.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	answered := make(chan int, 1)
	go func() {
		resp, err := (&http.Client{Timeout: 40 * time.Second}).Post(url, "", bytes.NewReader([]byte{0x02}))
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	waitFor(t, 10*time.Second, "the request's produce request at the broker", func() bool { return held.Load() > 0 })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // systemd's KillSignal after ExecStop's kill
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	free() // the broker answers: the stop can finish
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20 s after the produce request was answered; stderr: %s", stderr)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after two SIGTERMs 20 ms apart, want 0 (one stop, drained); stderr: %s", code, stderr)
	}
	select {
	case code := <-answered:
		if code != 200 {
			t.Errorf("the request in flight at the stop: %d, want 200 (drained)", code)
		}
	case <-time.After(5 * time.Second):
		t.Error("the request in flight at the stop was never answered")
	}
}
