package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
)

// TestSIGTERMWhileWaitingForZooKeeperStopsAtOnce: ktransfer starts while
// ZooKeeper is down and waits for a session, up to zk_timeout_ms. A
// SIGTERM then (systemctl stop, a deploy giving up) was only noticed
// after that wait, which ended in "start failed" and exit 1: the stop
// took zk_timeout_ms and looked like a failure. It must end the start at
// once, say so in the log, and exit 0 as a stop does: nothing was claimed.
func TestSIGTERMWhileWaitingForZooKeeperStopsAtOnce(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "modules"), 0o755)
	os.WriteFile(filepath.Join(dir, "modules", "m.yaml"), []byte("topic: t\nprotocol:\n name: http\n uri: /p\nbackend_servers: [127.0.0.1:1]\n"), 0o644)
	down := bintest.FreePort(t) // nothing listens there: ZooKeeper is down
	conf := filepath.Join(dir, "ktransfer.yaml")
	os.WriteFile(conf, []byte(fmt.Sprintf("log_level: 8\nzk_chroot: /mq/c\nzk_hosts: [127.0.0.1:%d]\nzk_timeout_ms: 25000\n"+
		"broker_hosts: [127.0.0.1:1]\nmodule_conf_dir: %s\nmodule_enabled: [m]\nadmin_addr: \"\"\n", down, filepath.Join(dir, "modules"))), 0o644)
	p := startWatched(t, conf) // log_dir unset: the log is standard error
	waitFor(t, "the zookeeper client trying to connect", func() bool {
		return strings.Contains(p.stderr.String(), "zookeeper client")
	})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5 s after SIGTERM while waiting for ZooKeeper (zk_timeout_ms 25000); log:\n%s", p.stderr)
	}
	t.Logf("stopped %v after SIGTERM", time.Since(sent).Round(time.Millisecond))
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM during start-up, want 0; log:\n%s", code, p.stderr)
	}
	if log := p.stderr.String(); !strings.Contains(log, "stopped while starting") || strings.Contains(log, "start failed") {
		t.Errorf("log does not say the start was stopped:\n%s", log)
	}
}
