package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSIGHUPDuringStartReloadsOnceStarted: a configuration tool that
// rewrites a module file and sends SIGHUP right after a restart can reach
// ktransfer after it read its files, as it opens its log. The signal was
// caught only later, so it killed the process. ktransfer must go on
// starting and then reload: the module pushes to its new backend, and
// SIGTERM stops the process with 0.
func TestSIGHUPDuringStartReloadsOnceStarted(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 4}})
	s := newSetupOn(t, k, kafkaconf.Default(), "", 20)
	fifo := bintest.NewLogFIFO(t, filepath.Join(s.dir, "log", "ktransfer.log"))
	p := startWatched(t, s.conf)
	fifo.WaitBlocked(p.cmd, p.exited, p.stderr)

	var pushes atomic.Int64
	moved := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { pushes.Add(1) }))
	t.Cleanup(moved.Close)
	module := filepath.Join(s.dir, "modules", "m.yaml")
	text, err := os.ReadFile(module)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(text), "backend_servers: [", "backend_servers: ["+strings.TrimPrefix(moved.URL, "http://")+"]\n#", 1)
	if err := os.WriteFile(module+".new", []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(module+".new", module); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logged := fifo.Open(p.exited)

	cl := kafkatest.Client(t, k, kafkaconf.Default())
	// The start, then the reload: a loaded machine's time, not the
	// reload's.
	deadline := time.Now().Add(bintest.StartWithin)
	for i := 0; pushes.Load() == 0; i++ {
		select {
		case <-p.exited:
			t.Fatalf("ktransfer_bin ended after a SIGHUP during start-up: %v; stderr: %s; log: %s", p.cmd.ProcessState, p.stderr, logged)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no push to the module's new backend within %v; stderr: %s; log: %s", bintest.StartWithin, p.stderr, logged)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")}).FirstErr()
		cancel()
		time.Sleep(20 * time.Millisecond)
	}
	bintest.StopWithin(t, p.cmd, p.exited, 20*time.Second, "once pushing", p.stderr)
}
