package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSIGTERMWhileOpeningTheLogStops: SIGTERM is caught from the start
// (before the configuration is read), so it no longer ends the process
// by its default action. Opening the log file can block — a named pipe
// whose reader (a log shipper) is not up, a log_dir on a mount that does
// not answer — and a SIGTERM then must still stop the start at once,
// exit 0, not be held until the open returns (systemd would kill the
// process at TimeoutStopSec and count the stop as failed).
func TestSIGTERMWhileOpeningTheLogStops(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	dir := t.TempDir()
	logDir := filepath.Join(dir, "log")
	f := filepath.Join(dir, "kproxy.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("log_dir: %s\nlog_level: 4\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nbroker_hosts: [%s]\n",
		logDir, freePort(t), c.ListenAddrs()[0])), 0o644)
	fifo := bintest.NewLogFIFO(t, filepath.Join(logDir, "kproxy.log"))
	cmd, stderr := bintest.Start(t, binary(t), "-f", f)
	exited := bintest.Exited(t, cmd)
	fifo.WaitBlocked(cmd, exited, stderr)
	bintest.StopWithin(t, cmd, exited, 5*time.Second, "while opening its log", stderr)
	if !strings.Contains(stderr.String(), "stopped while starting") {
		t.Errorf("standard error does not say the start was stopped: %s", stderr)
	}
}
