package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSIGHUPDuringStartIsNotFatal: logrotate's postrotate SIGHUP, or a
// reload sent right after a restart, can reach kproxy while it starts. It
// was caught only once the log was open and the service built: before
// that it killed the process (SIGHUP's default action). Here it comes
// after the configuration was read, as the log is being opened: kproxy
// must go on starting, serve, and stop with 0 on SIGTERM.
func TestSIGHUPDuringStartIsNotFatal(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	dir := t.TempDir()
	port := freePort(t)
	logDir := filepath.Join(dir, "log")
	f := filepath.Join(dir, "kproxy.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("log_dir: %s\nlog_level: 4\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nbroker_hosts: [%s]\n",
		logDir, port, c.ListenAddrs()[0])), 0o644)
	fifo := bintest.NewLogFIFO(t, filepath.Join(logDir, "kproxy.log"))
	cmd, stderr := bintest.Start(t, binary(t), "-f", f)
	exited := bintest.Exited(t, cmd)
	fifo.WaitBlocked(cmd, exited, stderr)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logged := fifo.Open(exited)
	url := fmt.Sprintf("http://127.0.0.1:%d/commit?topic=t&key=k", port)
	bintest.AwaitServing(t, cmd, exited, bintest.StartWithin, stderr, logged, func() error { return bintest.Answers200(http.Post(url, "", bytes.NewReader([]byte{0x01}))) })
	bintest.StopWithin(t, cmd, exited, 15*time.Second, "once serving", stderr)
	if !strings.Contains(logged.String(), "kproxy started") {
		t.Errorf("log lacks the start: %s", logged)
	}
}
