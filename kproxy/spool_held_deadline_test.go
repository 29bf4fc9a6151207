package kproxy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolHeldBehindKeyAnsweredByDeadline attacks the promise that a
// client gets its answer by produce_timeout_ms (250 ms later at most),
// here for records a spooling topic holds back behind an earlier record of
// their key that kgo still has.
//
// A spool=0 record s of key k is in a produce request out to a broker that
// froze; another record's spool_after_ms makes the topic spool. A /commit
// record and a /batch's two records of key k then wait for kgo's answer to
// s before they may be spooled, and kgo's idempotent client never gives up
// a request that is out: they waited until the broker resumed, holding
// their requests and req_pool_size places. They must be answered by their
// deadline, 503 (not written), and none of them may reach Kafka after the
// broker resumes; the batch's record of another key is spooled (202), and
// the topic goes to Kafka directly again once it drained.
func TestSpoolHeldBehindKeyAnsweredByDeadline(t *testing.T) {
	const (
		produceTimeout = 2 * time.Second
		// The handler's grace past the deadline (250 ms), and the
		// scheduler under -race on a busy machine.
		margin = time.Second
	)
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, func(cfg *kproxy.Config) {
		cfg.SpoolAfterMs = 200
		cfg.ProduceTimeoutMs = int(produceTimeout / time.Millisecond)
	})
	warmUp(t, p, "topic="+topic+"&key=w&acks=-1", unique(t, "warm-up"))

	// The broker freezes: it keeps every produce request until the thaw,
	// and tells of the first.
	thawed, out := make(chan struct{}), make(chan struct{})
	var thawOnce, outOnce sync.Once
	thaw := func() { thawOnce.Do(func() { close(thawed) }) }
	t.Cleanup(thaw) // before the cluster closes: it waits for the control
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		select {
		case <-thawed:
			return nil, nil, false
		default:
		}
		c.KeepControl()
		outOnce.Do(func() { close(out) })
		<-thawed
		return nil, nil, false
	})

	type reply struct {
		code int
		took time.Duration
		body string
	}
	cl := &http.Client{Timeout: 10 * time.Second} // past every bound of the test
	send := func(path, query, ctype string, body []byte) <-chan reply {
		ch := make(chan reply, 1)
		go func() {
			start := time.Now()
			resp, err := cl.Post(p.url+path+"?"+query, ctype, bytes.NewReader(body))
			if err != nil {
				ch <- reply{-1, time.Since(start), err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ch <- reply{resp.StatusCode, time.Since(start), string(b)}
		}()
		return ch
	}
	commit := func(key, extra, value string) <-chan reply {
		return send("/commit", "topic="+topic+"&acks=-1&key="+key+extra, "application/msgpack", unique(t, value))
	}

	sent := commit("k", "&spool=0", "s")
	select {
	case <-out:
	case <-time.After(10 * time.Second):
		t.Fatal("s not sent to the broker")
	}
	if r := <-commit("x", "", "x"); r.code != 202 { // spool_after_ms: the topic spools
		t.Fatalf("x, unanswered by the frozen broker: %d %q, want 202 (spooled)", r.code, r.body)
	}
	held := commit("k", "", "k-commit")
	recs, _ := json.Marshal([]map[string]any{
		{"topic": topic, "key": "k", "value": "k-batch-1"},
		{"topic": topic, "key": "y", "value": "y-batch"},
		{"topic": topic, "key": "k", "value": "k-batch-2"},
	})
	batch := send("/batch", "acks=-1", "application/json", recs)

	r := <-held
	if r.code != 503 || r.took > produceTimeout+margin {
		t.Errorf("/commit of key k behind s: %d after %v %q, want 503 (not written) within produce_timeout_ms (%v) + %v",
			r.code, r.took.Round(time.Millisecond), r.body, produceTimeout, margin)
	}
	r = <-batch
	var ba batchAnswerBody
	if err := json.Unmarshal([]byte(r.body), &ba); err != nil || len(ba.Results) != 3 {
		t.Fatalf("/batch: %d %q: %v", r.code, r.body, err)
	}
	if got := []int{ba.Results[0].Status, ba.Results[1].Status, ba.Results[2].Status}; r.took > produceTimeout+margin ||
		got[0] != 503 || got[1] != 202 || got[2] != 503 {
		t.Errorf("/batch of keys k, y, k (k behind s): statuses %v after %v, want [503 202 503] within produce_timeout_ms (%v) + %v",
			got, r.took.Round(time.Millisecond), produceTimeout, margin)
	}
	if r := <-sent; r.code != 504 {
		t.Errorf("s (spool=0) in the frozen request: %d %q, want 504 (may have been written)", r.code, r.body)
	}

	thaw()
	spoolEmpty(t, p)
	postDirect(t, p, "topic="+topic+"&acks=-1&key=k", unique(t, "after"))
	written := inKafka(t, c)
	for _, v := range []string{"k-commit", "k-batch-1", "k-batch-2"} {
		b, _ := msgpack.Marshal(v)
		if n := written[string(b)] + written[`"`+v+`"`]; n != 0 {
			t.Errorf("%s, answered 503 (not written), is in Kafka %d times", v, n)
		}
	}
	for _, v := range []string{"s", "x", "after"} {
		if b, _ := msgpack.Marshal(v); written[string(b)] == 0 {
			t.Errorf("%s not in Kafka after the thaw", v)
		}
	}
	if written[`"y-batch"`] == 0 {
		t.Error("y-batch, spooled (202), not in Kafka after the thaw")
	}
}
