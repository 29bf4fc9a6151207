package ktransfer_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestReplayLastingFetchErrorIsNotSpun: the brokers answer a replay's
// fetches of the dead-letter topic with an error the Kafka client does not
// retry by itself (the principal may not read the topic). The replay asks
// again with a growing wait, as the daemon does, not as fast as the
// brokers answer (each answer was a warning line: thousands a second, for
// the two minutes before the replay gives up), and replays the dead
// letters once the error ends.
func TestReplayLastingFetchErrorIsNotSpun(t *testing.T) {
	e, b, m := dlqModule(t, nil)
	var recs []*kgo.Record
	for i := range 3 {
		recs = append(recs, &kgo.Record{Topic: "dlq", Key: []byte("k"), Value: []byte("v" + strconv.Itoa(i)), Headers: []kgo.RecordHeader{
			{Key: "ktransfer-module", Value: []byte("m")}, {Key: "ktransfer-topic", Value: []byte("t")},
			{Key: "ktransfer-partition", Value: []byte("0")}, {Key: "ktransfer-offset", Value: []byte(strconv.Itoa(i))}}})
	}
	e.produceRecords(t, recs...)
	refusing := atomic.Bool{}
	refusing.Store(true)
	refused := e.refuseFetches(kerr.TopicAuthorizationFailed.Code, refusing.Load)
	type result struct {
		rep ktransfer.ReplayReport
		err error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		rep, err := ktransfer.Replay(ctx, e.config(t, 0, m), "m", time.Time{}, testLog(t))
		done <- result{rep, err}
	}()
	waitFor(t, "a fetch refused", 10*time.Second, func() bool { return refused.Load() > 0 })
	from, start := refused.Load(), time.Now()
	time.Sleep(2 * time.Second) // a rate is measured: fetches over two seconds
	n := refused.Load() - from
	t.Logf("%d fetches refused in %v", n, time.Since(start))
	if n > 40 {
		t.Errorf("%d fetches refused in %v: the replay asks again at once", n, time.Since(start))
	}
	refusing.Store(false)
	r := <-done
	if r.err != nil || r.rep.Replayed != 3 || len(b.got()) != 3 {
		t.Errorf("after the error ended: %v, %v, %d pushes; want the 3 dead letters replayed", r.rep, r.err, len(b.got()))
	}
}
