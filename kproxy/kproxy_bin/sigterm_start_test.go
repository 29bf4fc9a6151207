package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSIGTERMWhileWaitingForKafkaStopsAtOnce: at start kproxy waits for a
// broker to answer, up to kafka.dial_timeout_ms. A SIGTERM then was only
// noticed after that wait, which ended in "start failed" and exit 1: the
// stop took the whole wait and looked like a failure. It must end the
// start at once, say so in the log, and exit 0 as a stop does.
func TestSIGTERMWhileWaitingForKafkaStopsAtOnce(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	silence := make(chan struct{})
	t.Cleanup(func() { close(silence) })
	var held atomic.Int64
	c.ControlKey(int16(kmsg.ApiVersions), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		held.Add(1)
		c.SleepControl(func() { <-silence })
		return nil, nil, false
	})
	dir := t.TempDir()
	f := filepath.Join(dir, "kproxy.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("log_level: 4\nport: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nbroker_hosts: [%s]\n"+
		"kafka:\n dial_timeout_ms: 25000\n", freePort(t), c.ListenAddrs()[0])), 0o644)
	cmd, stderr := bintest.Start(t, binary(t), "-f", f) // log_dir unset: the log is standard error
	exited := bintest.Exited(t, cmd)
	deadline := time.Now().Add(10 * time.Second)
	for held.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("kproxy_bin asked no broker within 10 s; stderr: %s", stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	bintest.StopWithin(t, cmd, exited, 5*time.Second, "while waiting for Kafka (dial_timeout_ms 25000)", stderr)
	if log := stderr.String(); !strings.Contains(log, "stopped while starting") || strings.Contains(log, "start failed") {
		t.Errorf("log does not say the start was stopped: %s", log)
	}
}
