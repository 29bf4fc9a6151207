package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestSIGHUPDuringStartIsNotFatal: a SIGHUP (logrotate's) that reaches
// kmonitor after it read its configuration, as it opens its log, killed
// it: the signal was caught only later. kmonitor must go on starting,
// serve, and stop with 0 on SIGTERM.
func TestSIGHUPDuringStartIsNotFatal(t *testing.T) {
	z := zktest.Start(t)
	port := bintest.FreePort(t)
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	f := filepath.Join(dir, "kmonitor.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("base:\n log_dir: %s\n clusters: [c1]\nhttp_server:\n port: %d\n listen_host: 127.0.0.1\n"+
		"c1:\n chroot: /mq/c1\n zk_hosts: [%s]\n", logDir, port, z.Addr)), 0o644)
	fifo := bintest.NewLogFIFO(t, filepath.Join(logDir, "kmonitor.log"))
	cmd, stderr := bintest.Start(t, bintest.Build(t, "."), "-f", f)
	exited := bintest.Exited(t, cmd)
	fifo.WaitBlocked(cmd, exited, stderr)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logged := fifo.Open(exited)
	bintest.AwaitServing(t, cmd, exited, bintest.StartWithin, stderr, logged, func() error {
		return bintest.Answers200(http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port)))
	})
	bintest.StopWithin(t, cmd, exited, 10*time.Second, "once serving", stderr)
	if !strings.Contains(logged.String(), "kmonitor started") {
		t.Errorf("log lacks the start: %s", logged)
	}
}
