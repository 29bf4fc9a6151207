package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestSIGTERMWhileBrokerSilentStopsPromptly: kmonitor asks a broker that
// does not answer its connection's first request (ApiVersions) for end
// offsets; kgo does not heed the stop's context meanwhile. A SIGTERM then
// must stop it within a few seconds, exit 0.
func TestSIGTERMWhileBrokerSilentStopsPromptly(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	silence := make(chan struct{})
	t.Cleanup(func() { close(silence) })
	var held atomic.Int64
	k.ControlKey(int16(kmsg.ApiVersions), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		held.Add(1)
		k.SleepControl(func() { <-silence })
		return nil, nil, false
	})
	z := zktest.Start(t)
	conn := zktest.Connect(t, z.Addr)
	dir := zklayout.Offsets("/mq/c1", "m", "a")
	if err := zklayout.CreateAll(conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create(dir+"/0", []byte("3"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	port := bintest.FreePort(t)
	tmp := t.TempDir()
	f := filepath.Join(tmp, "kmonitor.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("base:\n log_level: 4\n clusters: [c1]\n poll_interval_ms: 100\n"+
		"http_server:\n port: %d\n listen_host: 127.0.0.1\n"+
		"c1:\n chroot: /mq/c1\n zk_hosts: [%s]\n broker_hosts: [%s]\n",
		port, z.Addr, k.ListenAddrs()[0])), 0o644)
	cmd, stderr := bintest.Start(t, bintest.Build(t, "."), "-f", f)
	exited := bintest.Exited(t, cmd)
	deadline := time.Now().Add(bintest.StartWithin)
	for held.Load() == 0 {
		select {
		case <-exited:
			t.Fatalf("kmonitor_bin ended before asking a broker: %v; stderr: %s", cmd.ProcessState, stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kmonitor_bin asked no broker within %v; stderr: %s", bintest.StartWithin, stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	bintest.StopWithin(t, cmd, exited, 6*time.Second, "while a broker does not answer", stderr)
}
