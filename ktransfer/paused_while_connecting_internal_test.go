package ktransfer

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPausedWhileConnectingDoesNotPush: README: a process whose
// ZooKeeper has been silent for the session grace pushes nothing (another
// may hold its partitions once its session expires). The check came when
// the push was chosen, before it connected: a process paused (SIGSTOP)
// while it connected, past the session timeout, wrote the push at once on
// SIGCONT, before its session watcher ran, while the new owner pushed the
// same keys. Here ZooKeeper turns silent as the connect returns: the push
// must wait until ZooKeeper answers again, and be written then, once,
// without a failure charged to the backend.
func TestPausedWhileConnectingDoesNotPush(t *testing.T) {
	var got atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got.Add(1) }))
	t.Cleanup(s.Close)
	cfg := DefaultModule()
	cfg.Protocol.WriteTimeoutMs, cfg.Protocol.ConnTimeoutMs = 2000, 2000
	cfg.Name, cfg.Topic, cfg.BackendServers, cfg.Protocol.URI = "m", "t", []string{s.Listener.Addr().String()}, "/push"
	p, err := newPusher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.closeAll)
	st := newMetrics().module("m")
	tr := &Transfer{cfg: Config{ZKTimeoutMs: 3000}, base: time.Now()}
	tr.lastAnswer.Store(tr.now()) // ZooKeeper answered just now
	m := &module{cfg: cfg, t: tr, log: slog.New(slog.DiscardHandler), pusher: p, stats: st,
		breakers: newBreakers(cfg, st), limiter: newLimiter(cfg)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	part := &partition{m: m, ctx: ctx}
	var once atomic.Bool
	hook := func(*partition) {
		if once.CompareAndSwap(false, true) {
			tr.lastAnswer.Store(tr.now() - int64(time.Hour)) // paused past the grace while it connected
		}
	}
	afterConnect.Store(&hook)
	t.Cleanup(func() { afterConnect.Store(nil) })
	done := make(chan outcome, 1)
	go func() {
		var buf []byte
		done <- m.handle(ctx, &record{msg: &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("v")}, part: part}, &buf)
	}()
	for deadline := time.Now().Add(5 * time.Second); !once.Load(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the push did not connect within 5 s")
		}
	}
	time.Sleep(300 * time.Millisecond) // the push's write, had it gone on
	if n := got.Load(); n != 0 {
		t.Fatalf("ZooKeeper silent for an hour since the connect: %d pushes written", n)
	}
	tr.lastAnswer.Store(tr.now()) // ZooKeeper answers again
	select {
	case out := <-done:
		if out != outPushed || got.Load() != 1 {
			t.Errorf("after ZooKeeper answered again: outcome %v, %d pushes; want pushed, once", out, got.Load())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("not pushed 5 s after ZooKeeper answered again")
	}
	var retried dto.Metric
	if err := st.retriedC.Write(&retried); err != nil {
		t.Fatal(err)
	}
	if n := retried.GetCounter().GetValue(); n != 0 {
		t.Errorf("%v retries counted for a push that was not sent", n)
	}
}
