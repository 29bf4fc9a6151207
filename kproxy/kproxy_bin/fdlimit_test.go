package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestOutOfFileDescriptorsKeepsServing: more connections than kproxy_bin
// may open files for (a connection flood, or too low a ulimit -n) make
// accepting fail with EMFILE for a while. kproxy must go on serving once
// connections close, as Go's own servers do, not take the failed accept
// for the end of its listener and shut down.
func TestOutOfFileDescriptorsKeepsServing(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	dir := t.TempDir()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf("log_dir: %s\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nbroker_hosts: [%s]\n"+
		"read_timeout_ms: 10000\nwrite_timeout_ms: 2000\n", filepath.Join(dir, "log"), port, c.ListenAddrs()[0])
	f := filepath.Join(dir, "kproxy.yaml")
	os.WriteFile(f, []byte(cfg), 0o644)
	cmd, stderr := bintest.Start(t, binary(t), "-f", f)
	exited := bintest.Exited(t, cmd)
	pid := cmd.Process.Pid
	logFile := filepath.Join(dir, "log", "kproxy.log")
	url := "http://" + addr + "/commit?topic=t&key=k"
	post := func() (int, error) {
		client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := client.Post(url, "", bytes.NewReader([]byte{0x01}))
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	answers200 := func() error {
		if code, err := post(); code != 200 {
			return fmt.Errorf("answered %d (%v)", code, err)
		}
		return nil
	}
	bintest.AwaitServing(t, cmd, exited, bintest.StartWithin, stderr, bintest.LogFile(logFile), answers200)

	// Leave kproxy_bin 10 files more than it has open now, then open 30
	// connections that send nothing (cut only at read_timeout_ms).
	open := func() int {
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		return len(fds)
	}
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		t.Fatal(err)
	}
	limit := uint64(open() + 10)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: lim.Max}, nil); err != nil {
		t.Fatal(err)
	}
	var flood []net.Conn
	for range 30 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			break // kproxy_bin no longer listens: said below
		}
		flood = append(flood, conn)
	}
	// At the limit: the next accept fails with EMFILE (said in the log, or
	// on standard error when kproxy_bin gives up). The flood ends. The
	// accepts are kproxy_bin's to make: a loaded machine may delay them.
	waitUntil := time.Now().Add(30 * time.Second)
	for {
		logText, _ := os.ReadFile(logFile)
		if bytes.Contains(logText, []byte("too many open files")) || bytes.Contains([]byte(stderr.String()), []byte("too many open files")) {
			break
		}
		if time.Now().After(waitUntil) {
			t.Fatalf("no accept failed at the limit of %d files within 30 s; log:\n%s", limit, logText)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, conn := range flood {
		conn.Close()
	}
	// Serving again: a process that took the failed accept for the end of
	// its listener has exited (or no longer listens) and fails this.
	bintest.AwaitServing(t, cmd, exited, 30*time.Second, stderr, bintest.LogFile(logFile), answers200)
	select {
	case <-exited:
		t.Fatalf("kproxy_bin exited: %v", cmd.ProcessState)
	default:
	}
	// The operator reads that it is over, not only that it began.
	if logText, _ := os.ReadFile(logFile); !bytes.Contains(logText, []byte("accepting connections again")) {
		t.Fatalf("accepts work again and the log does not say so:\n%s", logText)
	}
}
