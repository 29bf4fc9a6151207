package ktransfer_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// connBackend is a backend that counts its open connections and the
// distinct bodies pushed to it.
type connBackend struct {
	*httptest.Server
	mu     sync.Mutex
	open   map[net.Conn]bool
	bodies map[string]bool
}

func newConnBackend(t *testing.T) *connBackend {
	t.Helper()
	b := &connBackend{open: map[net.Conn]bool{}, bodies: map[string]bool{}}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		// Pushes overlap, so that each worker holds a connection of its own.
		time.Sleep(2 * time.Millisecond)
		b.mu.Lock()
		b.bodies[string(body)] = true
		b.mu.Unlock()
	}))
	b.Config.ConnState = func(c net.Conn, s http.ConnState) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch s {
		case http.StateNew:
			b.open[c] = true
		case http.StateClosed, http.StateHijacked:
			delete(b.open, c)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *connBackend) conns() int    { b.mu.Lock(); defer b.mu.Unlock(); return len(b.open) }
func (b *connBackend) distinct() int { b.mu.Lock(); defer b.mu.Unlock(); return len(b.bodies) }

// TestStoppedRunsCloseTheirConnections: ten reloads in a row, each
// changing module m while its workers hold keep-alive connections to its
// backend: when a reload returns, the stopped run's connections are closed
// (they used to stay open, idle, for a minute, with a cleaner goroutine per
// backend), and within seconds of the last one the process's goroutines
// are back at their level before the reloads. A reload removing m closes
// its connections, and a shutdown closes module n's.
func TestStoppedRunsCloseTheirConnections(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2}, kafkatest.Topic{Name: "u", Partitions: 1})
	bm, bn := newConnBackend(t), newConnBackend(t)
	c := e.reloadConf(t, "m", "n")
	c.module(t, "m", "t", "m", bm.URL, "")
	c.module(t, "n", "u", "n", bn.URL, "")
	r := startConf(t, c, nil)
	prod := kafkatest.Client(t, e.kafka, e.kc)
	produced := 0
	push := func(topic string, n int, b *connBackend) {
		t.Helper()
		var rs []*kgo.Record
		for range n {
			rs = append(rs, &kgo.Record{Topic: topic, Key: []byte("k" + strconv.Itoa(produced%40)), Value: []byte(strconv.Itoa(produced))})
			produced++
		}
		// Counted before producing: the records can be pushed as soon as
		// they are produced, before ProduceSync returns to this goroutine.
		want := b.distinct() + n
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, strconv.Itoa(n)+" records pushed", 20*time.Second, func() bool { return b.distinct() == want })
	}
	// Closed at once, not by the idle timeout (4 s after their last push,
	// made before the reload): 3 s leaves a loaded host room.
	closed := func(what string, b *connBackend) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for b.conns() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d backend connections still open 3 s later", what, b.conns())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	push("u", 40, bn)
	push("t", 100, bm)
	c0, g0 := bm.conns(), runtime.NumGoroutine()
	t.Logf("before the reloads: backend connections open %d, goroutines %d", c0, g0)
	for i := range 10 {
		c.module(t, "m", "t", "m"+strconv.Itoa(i%2), bm.URL, "")
		if err := r.tr.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		closed(fmt.Sprintf("reload %d", i+1), bm)
		push("t", 40, bm)
	}
	// The last run's connections and goroutines stay; each stopped run's
	// idle-connection cleaner (fasthttp's, one per backend) ends within
	// the idle timeout (4 s). slack: the count varies by a few (the Kafka
	// and ZooKeeper clients' own).
	const slack = 5
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > g0+slack {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after 10 reloads: goroutines %d (%d before)", runtime.NumGoroutine(), g0)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("after the reloads: goroutines %d", runtime.NumGoroutine())
	push("t", 40, bm)
	c.enable(t, "", "n")
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	closed("module m removed", bm)
	push("u", 40, bn)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	closed("shutdown", bn)
}
