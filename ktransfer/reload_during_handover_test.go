package ktransfer_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestReloadDuringHandOverEndsOldRunFirst: a backend that takes every push
// and never answers (read_timeout_ms 0, the default: no limit), one
// record in each of two partitions, both pushes hung. A second process
// joins, and the first one's coordinator hands a partition over, waiting
// up to shutdown_timeout_ms for its hung push. A reload restarting the
// module then comes: its hand-over is bounded by its own
// shutdown_timeout_ms, after which the pushes still out are cut short.
// The coordinator's hand-over ignored that cut and waited its own full
// bound, then the run released the partition it kept with another full
// bound: the reload gave up on the old run ("ZooKeeper not answering")
// and started the new one while the old one's push of the kept
// partition's key was still out, and the backend had two pushes of one
// key at once from one process. The old run now ends at the reload's
// bound, its pushes cut short, before the new one starts.
func TestReloadDuringHandOverEndsOldRunFirst(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	var mu sync.Mutex
	out := map[string]int{}  // key → pushes of the first process in flight
	twice := ""              // a key pushed twice at once by the first process
	runs := map[string]int{} // "a", "c": pushes each run of the first process began
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		first := !strings.HasPrefix(r.URL.Path, "/b/") // /a/: the old run, /c/: the new one
		key := r.URL.Query().Get("key")
		if first {
			mu.Lock()
			runs[r.URL.Path[1:2]]++
			if out[key]++; out[key] > 1 && twice == "" {
				twice = key
			}
			mu.Unlock()
		}
		select { // never answers while the test runs
		case <-hang:
		case <-r.Context().Done(): // ktransfer closed the connection
		}
		if first {
			mu.Lock()
			out[key]--
			mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(hang) }) // before srv.Close, which waits for the handlers
	began := func(run string) int { mu.Lock(); defer mu.Unlock(); return runs[run] }

	const shutdownMs = 8000 // over two session timeouts and 2 s: the reload's give-up came before the old run's end
	c := e.reloadConf(t)
	c.shutdownMs = shutdownMs
	c.enable(t, "zk_timeout_ms: 2000\n", "m")
	c.module(t, "m", "t", "a", srv.URL, "")
	r := startConf(t, c, nil)
	waitFor(t, "the first process holding both partitions", 10*time.Second, func() bool {
		st := r.tr.Status()
		return len(st) == 1 && len(st[0].Partitions) == 2
	})
	writeKeys(t, e, 0, []string{"k0"})
	writeKeys(t, e, 1, []string{"k1"})
	waitFor(t, "both pushes hung", 10*time.Second, func() bool { return began("a") == 2 })

	second := module("m", "t", srv.URL)
	second.Protocol.URI = "/b/{#TOPIC}?key={#KEY}"
	e.startWith(t, 2000, second)
	waitFor(t, "the second process registered", 10*time.Second, func() bool {
		ids, _, _ := e.conn.Children(zklayout.ConsumerIDs(chroot, "m"))
		return len(ids) == 2
	})
	time.Sleep(500 * time.Millisecond) // the first process's coordinator has begun handing a partition over

	c.module(t, "m", "t", "c", srv.URL, "")
	start := time.Now()
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("reload during a hand-over: %v (shutdown_timeout_ms %d)", took.Round(time.Millisecond), shutdownMs)
	waitFor(t, "the new run pushing the partition it kept", 15*time.Second, func() bool { return began("c") > 0 })
	mu.Lock()
	defer mu.Unlock()
	if twice != "" {
		t.Errorf("key %s pushed twice at once by the first process: the new run started while the old one's push was out", twice)
	}
	if limit := shutdownMs*time.Millisecond + 2*time.Second; took > limit {
		t.Errorf("the reload took %v, over shutdown_timeout_ms and 2 s (%v): the hand-over under way was not cut short with the reload's", took.Round(time.Millisecond), limit)
	}
}
