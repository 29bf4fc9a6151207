package ktransfer_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestReloadEndsAbandonedHungPush: a backend that takes a push and never
// answers, and protocol.read_timeout_ms 0 (the default: no limit). Each
// reload that restarts the module abandons the hung push at
// shutdown_timeout_ms, and the new run pushes the uncommitted record again.
// The abandoned push's connection is closed, so that it ends: the backend
// holds one connection whatever the number of reloads, and the process's
// goroutines come back to their level. They used to stay for ever, one
// more connection and worker goroutine (holding the old run) per reload.
func TestReloadEndsAbandonedHungPush(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	requests := 0
	hang := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		mu.Lock()
		requests++
		mu.Unlock()
		select { // never answers while the test runs
		case <-hang:
		case <-r.Context().Done(): // ktransfer closed the connection
		}
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			open[c] = true
		case http.StateClosed, http.StateHijacked:
			delete(open, c)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hang) }) // before srv.Close, which waits for the handlers
	conns := func() int { mu.Lock(); defer mu.Unlock(); return len(open) }
	pushes := func() int { mu.Lock(); defer mu.Unlock(); return requests }

	c := e.reloadConf(t, "m")
	c.shutdownMs = 300
	c.enable(t, "", "m")
	write := func(path string) {
		t.Helper()
		data := fmt.Sprintf("topic: t\nprotocol:\n name: http\n uri: /%s/{#TOPIC}\n write_timeout_ms: 2000\n conn_timeout_ms: 2000\n"+
			"worker_num: 1\nwindow_size: 10\nbackend_servers: [%s]\n", path, strings.TrimPrefix(srv.URL, "http://"))
		if err := os.WriteFile(filepath.Join(c.dir, "modules", "m.yaml"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("m0")
	e.produce(t, "t", [][2]string{{"k", "a"}})
	g0 := runtime.NumGoroutine()
	r := startConf(t, c, nil)
	waitFor(t, "the first push", 10*time.Second, func() bool { return pushes() == 1 })
	const reloads = 3
	for i := 1; i <= reloads; i++ {
		write(fmt.Sprintf("m%d", i))
		if err := r.tr.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("the record pushed again after reload %d", i), 10*time.Second, func() bool { return pushes() == i+1 })
		deadline := time.Now().Add(3 * time.Second)
		for conns() > 1 {
			if time.Now().After(deadline) {
				t.Fatalf("reload %d: the backend holds %d connections of worker_num 1 (the abandoned pushes' never end)", i, conns())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// One run's goroutines stay (its client, workers, committer) beside the
	// test's own; each abandoned run held at least its worker and its
	// connection's.
	const slack = 60
	deadline := time.Now().Add(8 * time.Second)
	for runtime.NumGoroutine() > g0+slack {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %d after %d reloads, %d before the start", runtime.NumGoroutine(), reloads, g0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}
