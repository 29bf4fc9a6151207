package ktransfer_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestReplayInterruptedDuringAHungPush: a replay is interrupted while its
// push waits for a backend that accepted the request and never answers
// (read_timeout_ms 0, the default). The replay ends with an error within
// shutdown_timeout_ms, as a daemon's stop does, the push abandoned; it
// waited for the backend's answer, which may never come.
func TestReplayInterruptedDuringAHungPush(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	e, _, m := dlqModule(t, func(int, push, http.ResponseWriter) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
	})
	t.Cleanup(func() { close(release) }) // before the backend's Close, which waits for its handlers
	e.produceRecords(t, &kgo.Record{Topic: "dlq", Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{
		{Key: "ktransfer-module", Value: []byte("m")}, {Key: "ktransfer-topic", Value: []byte("t")},
		{Key: "ktransfer-partition", Value: []byte("0")}, {Key: "ktransfer-offset", Value: []byte("0")}}})
	cfg := e.config(t, 0, m) // shutdown_timeout_ms 3000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		rep ktransfer.ReplayReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := ktransfer.Replay(ctx, cfg, "m", time.Time{}, testLog(t))
		done <- result{rep, err}
	}()
	select {
	case <-arrived:
	case <-time.After(15 * time.Second):
		t.Fatal("the dead letter's push did not reach the backend")
	}
	cancel()
	start := time.Now()
	limit := time.Duration(cfg.ShutdownTimeoutMs)*time.Millisecond + 3*time.Second
	select {
	case r := <-done:
		t.Logf("replay returned %v after the interrupt: %v, %v", time.Since(start).Round(time.Millisecond), r.rep, r.err)
		if r.err == nil {
			t.Errorf("an interrupted replay returned no error: %v", r.rep)
		}
	case <-time.After(limit):
		t.Errorf("the interrupted replay had not returned %v after the interrupt: it waits for the hung push", limit)
	}
}
