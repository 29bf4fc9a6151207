package ktransfer

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestDeadLetterWaitsForZooKeeperAsAPushDoes: a process pushes a record;
// the backend refuses it for good (400, given up at once: a dead-letter
// topic is set), and by the time the answer is read ZooKeeper has not
// answered for longer than the grace, as after the process was paused
// mid-push (its session watcher has not run yet; past the session timeout
// another process may hold the partition and be pushing that record). A
// push then waits (mayPush); the dead letter, a write for the partition
// as a push is, must wait too: none is written while ZooKeeper stays
// silent, and none at all when the partition is then released. Before,
// the dead letter was written at once: the record's dead letter twice,
// once by this process and once by the next owner.
func TestDeadLetterWaitsForZooKeeperAsAPushDoes(t *testing.T) {
	tr, k, kc := deadLetterTransfer(t, 3000)
	tr.lastAnswer.Store(tr.now())
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		tr.lastAnswer.Store(tr.now() - int64(time.Hour)) // the process paused while the backend answered
		w.WriteHeader(http.StatusBadRequest)
	}))
	t.Cleanup(s.Close)
	cfg := DefaultModule()
	cfg.Protocol.WriteTimeoutMs, cfg.Protocol.ConnTimeoutMs = 2000, 2000
	cfg.Name, cfg.Topic, cfg.BackendServers, cfg.Protocol.URI = "m", "t", []string{s.Listener.Addr().String()}, "/push"
	cfg.DeadLetterTopic = "dlq"
	p, err := newPusher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := newMetrics().module("m")
	m := &module{cfg: cfg, t: tr, log: slog.New(slog.DiscardHandler), pusher: p, stats: st,
		breakers: newBreakers(cfg, st), limiter: newLimiter(cfg)}
	ctx, release := context.WithCancel(context.Background())
	defer release()
	part := &partition{m: m, ctx: ctx, abandoned: make(chan struct{})}
	r := &record{msg: &kgo.Record{Topic: "t", Key: []byte("k"), Value: []byte("v")}, part: part}
	done := make(chan outcome, 1)
	go func() {
		var buf []byte
		done <- m.handle(ctx, r, &buf)
	}()
	select {
	case out := <-done:
		t.Fatalf("handle ended (%v) while ZooKeeper was silent; %d dead letter(s) written", out, kafkatest.Records(t, k, kc, "dlq"))
	case <-time.After(time.Second):
	}
	if n := kafkatest.Records(t, k, kc, "dlq"); n != 0 {
		t.Fatalf("%d dead letter(s) written while ZooKeeper was silent for over the grace", n)
	}
	release() // the session watcher runs: the partition is released
	select {
	case out := <-done:
		if out != outUnfinished {
			t.Errorf("outcome %v after the release, want unfinished (the next owner gives it up)", out)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handle did not end after the partition's release")
	}
	if n := kafkatest.Records(t, k, kc, "dlq"); n != 0 {
		t.Errorf("%d dead letter(s) written by a process whose partition was released", n)
	}
}
