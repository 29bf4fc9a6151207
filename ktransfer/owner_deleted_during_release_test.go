package ktransfer_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestOwnerDeletedWhileAReleaseWaitsStopsThePartition: README: a claim
// whose owner node is deleted (by an operator, a script) is dropped at
// once, and any process may claim the partition. The reassignment that
// finds it gone waits for the releases it starts, and a hand-over waits
// for its pushes in progress (up to shutdown_timeout_ms): here A hands
// partition 1 over to B while a push of it hangs at the backend, and the
// owner node of partition 0, whose record A retries (500), is deleted
// meanwhile. B takes partition 0 and pushes it; A went on pushing it too,
// for as long as the release waited (20 pushes over 2 s in the review's
// run): two processes pushing the same keys at once.
func TestOwnerDeletedWhileAReleaseWaitsStopsThePartition(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	hang := make(chan struct{})
	var bStart atomic.Int64
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if strings.HasPrefix(p.path, "/a/") && p.partition == "1" {
			<-hang
			return
		}
		w.WriteHeader(500) // partition 0: retried for ever
	})
	t.Cleanup(func() { close(hang) })
	first := module("m", "t", b.URL)
	first.Protocol.URI = "/a/{#TOPIC}?key={#KEY}"
	first.WorkerNum = 4
	cfg := e.config(t, 0, first)
	cfg.ShutdownTimeoutMs = 10000
	tr, err := ktransfer.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 30*time.Second)
	waitFor(t, "A holds both", 10*time.Second, func() bool { return len(tr.Status()[0].Partitions) == 2 })
	writeKeys(t, e, 1, []string{"h"})
	writeKeys(t, e, 0, []string{"k0"})
	waitFor(t, "p1 hanging, p0 retrying", 10*time.Second, func() bool {
		h, r := false, false
		for _, p := range b.got() {
			if strings.HasPrefix(p.path, "/a/") && p.partition == "1" {
				h = true
			}
			if strings.HasPrefix(p.path, "/a/") && p.partition == "0" {
				r = true
			}
		}
		return h && r
	})
	second := module("m", "t", b.URL)
	second.Protocol.URI = "/b/{#TOPIC}?key={#KEY}"
	e.start(t, second)
	time.Sleep(1500 * time.Millisecond) // A now blocked releasing p1 (hung push, up to 10 s)
	owner := zklayout.Owners(chroot, "m", "t") + "/0"
	if err := e.conn.Delete(owner, -1); err != nil {
		t.Fatal(err)
	}
	t.Log("owner node of partition 0 deleted")
	waitFor(t, "B pushing partition 0", 10*time.Second, func() bool {
		for _, p := range b.got() {
			if strings.HasPrefix(p.path, "/b/") && p.partition == "0" {
				if bStart.Load() == 0 {
					bStart.Store(p.at.UnixNano())
				}
				return true
			}
		}
		return false
	})
	time.Sleep(2 * time.Second)
	at := time.Unix(0, bStart.Load())
	n := 0
	var last time.Time
	for _, p := range b.got() {
		if strings.HasPrefix(p.path, "/a/") && p.partition == "0" && p.at.After(at) {
			n++
			last = p.at
		}
	}
	if n > 0 {
		t.Errorf("split brain: A pushed partition 0 %d times after B's first push of it (last %v after)", n, last.Sub(at))
	}
}
