package ktransfer_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// hangingBackend starts a backend that never answers a push: it reads the
// body, says so on arrived, and holds the push until its connection is
// closed, said on closed, or the test ends. Each channel holds one signal;
// later ones are dropped.
func hangingBackend(t *testing.T) (url string, arrived, closed <-chan struct{}) {
	t.Helper()
	arrivedc, closedc, done := make(chan struct{}, 1), make(chan struct{}, 1), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		select {
		case arrivedc <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done(): // the connection was closed
			select {
			case closedc <- struct{}{}:
			default:
			}
		case <-done:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) }) // before srv.Close, which waits for the handlers
	return srv.URL, arrivedc, closedc
}

// replayInterruptedMidPush runs a replay of module m with cfg, cancels it
// once a push has arrived at the backend (arrived) and returns what the
// replay returned; the test fails if either takes too long.
func replayInterruptedMidPush(t *testing.T, cfg ktransfer.Config, arrived <-chan struct{}) (ktransfer.ReplayReport, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		rep ktransfer.ReplayReport
		err error
	}
	returned := make(chan result, 1)
	go func() {
		rep, err := ktransfer.Replay(ctx, cfg, "m", time.Time{}, testLog(t))
		returned <- result{rep, err}
	}()
	select {
	case <-arrived:
	case <-time.After(15 * time.Second):
		t.Fatal("the dead letter's push did not reach the backend")
	}
	cancel()
	select {
	case r := <-returned:
		return r.rep, r.err
	case <-time.After(10 * time.Second):
		t.Fatal("the interrupted replay did not return")
	}
	return ktransfer.ReplayReport{}, nil
}

// TestReplayClosesAbandonedPushConnections: a replay is interrupted while
// its push waits for a backend that never answers (read_timeout_ms 0); at
// shutdown_timeout_ms the push is abandoned and Replay returns. The
// abandoned push's connection must be closed then, as a module closes
// its abandoned pushes' (the push ends, its goroutine too). Before, it
// stayed open, and its goroutine waiting, until the process exited.
func TestReplayClosesAbandonedPushConnections(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	url, arrived, closed := hangingBackend(t)
	m := module("m", "t", url)
	m.DeadLetterTopic = "dlq"
	m.Protocol.ReadTimeoutMs = 0
	e.produceRecords(t, &kgo.Record{Topic: "dlq", Key: []byte("k"), Value: []byte("v"), Headers: []kgo.RecordHeader{
		{Key: "ktransfer-module", Value: []byte("m")}, {Key: "ktransfer-topic", Value: []byte("t")},
		{Key: "ktransfer-partition", Value: []byte("0")}, {Key: "ktransfer-offset", Value: []byte("0")}}})
	cfg := e.config(t, 0, m)
	cfg.ShutdownTimeoutMs = 300
	if _, err := replayInterruptedMidPush(t, cfg, arrived); err == nil {
		t.Fatal("an interrupted replay returned no error")
	}
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("the replay returned, its abandoned push's connection still open 3 s later")
	}
}

// TestReplayAbandonedPushIsNotGivenUp: as above with max_retry_times 0: the
// push abandoned at shutdown_timeout_ms ends with an error when its
// connection is closed. That is the interrupt's doing, not the backend's:
// the report must not count the dead letter as given up again (nor log
// it so); it was not pushed, and the replay's error says why.
func TestReplayAbandonedPushIsNotGivenUp(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	url, arrived, _ := hangingBackend(t)
	m := module("m", "t", url)
	m.DeadLetterTopic = "dlq"
	m.Protocol.ReadTimeoutMs = 0
	m.MaxRetryTimes = 0
	e.produceRecords(t, deadLetterOf("m", "t", 0, "hangs"))
	cfg := e.config(t, 0, m)
	cfg.ShutdownTimeoutMs = 300
	if rep, err := replayInterruptedMidPush(t, cfg, arrived); err == nil || rep.GivenUp != 0 || rep.Replayed != 0 {
		t.Fatalf("interrupted during its push: %v, err %v; want an error, nothing replayed nor given up", rep, err)
	}
}
