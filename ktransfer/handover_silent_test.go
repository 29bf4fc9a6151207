package ktransfer_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
)

// TestHandOverCutShortWhenZooKeeperGoesSilent: process a hands partition 1
// over to process b, which joined, while a's push of it hangs; with a long
// shutdown_timeout_ms (60 s) the hand-over waits for that push. Then a's
// ZooKeeper connection goes silent. Past 2/3 of the session timeout a must
// stop pushing everything, the partition it is handing over included,
// before its session expires and b claims the partition: when b pushes
// partition 1, a's push of it must have ended (its connection closed).
// Before, a session lost stopped only the partitions not being released: a
// kept its push open while b pushed the same key, two processes pushing
// one key at once.
func TestHandOverCutShortWhenZooKeeperGoesSilent(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	px, err := tcpproxy.Start(e.zkAdr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	var mu sync.Mutex
	var aHung, aClosed, bFirst time.Time
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body) // read whole: the server then notices the connection closed (r.Context)
		part := r.Header.Get("X-Kafka-Partition")
		switch {
		case strings.HasPrefix(r.URL.Path, "/a/") && part == "1":
			mu.Lock()
			aHung = time.Now()
			mu.Unlock()
			select {
			case <-r.Context().Done():
				mu.Lock()
				aClosed = time.Now()
				mu.Unlock()
			case <-done:
			}
			return
		case strings.HasPrefix(r.URL.Path, "/b/") && part == "1":
			mu.Lock()
			if bFirst.IsZero() {
				bFirst = time.Now()
			}
			mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	ma := module("m", "t", srv.URL)
	ma.Protocol.URI = "/a/{#TOPIC}?key={#KEY}"
	cfg := e.config(t, 4000, ma)
	cfg.ZKHosts = []string{px.Addr()}
	cfg.ShutdownTimeoutMs = 60000
	a, err := ktransfer.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, a.Run, 90*time.Second)
	t.Cleanup(func() { px.Thaw(); close(done) }) // before a's stop: its push ends
	waitFor(t, "a holding both partitions", 10*time.Second, func() bool { return len(a.Status()[0].Partitions) == 2 })
	writeKeys(t, e, 1, []string{"h"})
	waitFor(t, "a's push of partition 1 hanging", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !aHung.IsZero()
	})
	mb := module("m", "t", srv.URL)
	mb.Protocol.URI = "/b/{#TOPIC}?key={#KEY}"
	e.start(t, mb)
	waitFor(t, "a handing partition 1 over", 10*time.Second, func() bool { return ktransfer.Releasing(a) == 1 })
	px.Freeze()
	frozen := time.Now()
	waitFor(t, "b pushing partition 1 after a's session expired", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !bFirst.IsZero()
	})
	mu.Lock()
	defer mu.Unlock()
	if aClosed.IsZero() || !aClosed.Before(bFirst) {
		t.Fatalf("b pushed partition 1 %v after a's ZooKeeper went silent while a's push of it was still open (closed: %v): two processes pushing one key",
			bFirst.Sub(frozen).Round(time.Millisecond), !aClosed.IsZero())
	}
	t.Logf("a's push closed %v after the silence began, b's first push %v", aClosed.Sub(frozen).Round(time.Millisecond), bFirst.Sub(frozen).Round(time.Millisecond))
}
