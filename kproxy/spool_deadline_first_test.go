package kproxy_test

import (
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolDeadlineBeforeSpoolAfterAnsweredByIt attacks produce_timeout_ms's
// promise with the spool on: "the client gets its answer by then (504 if
// none, 250 ms later at most)", and "503 means not written". A topic's first
// look-up takes 2 s (a slow broker), the brokers then refuse every produce
// request (no leader), and spool_after_ms (2.5 s) counted from the record's
// hand-over to Kafka's client ends past the record's deadline (3 s from its
// arrival). /commit and /batch must answer by the deadline and the grace:
// 503 or 504, never a 202 later; and a record answered 503 is never written,
// not by the spool's drain either, once the brokers take records again.
func TestSpoolDeadlineBeforeSpoolAfterAnsweredByIt(t *testing.T) {
	const (
		produceTimeout = 3 * time.Second
		hold           = 2 * time.Second
		// The grace (250 ms) and the scheduler under -race on a busy
		// machine; spool_after_ms from the hand-over ends 1.5 s past
		// the deadline.
		limit = produceTimeout + 250*time.Millisecond + 750*time.Millisecond
	)
	transports := []string{"commit", "batch"}
	var topics []kafkatest.Topic
	for _, tr := range transports {
		topics = append(topics, kafkatest.Topic{Name: "first-" + tr, Partitions: 1})
	}
	c := kafkatest.Start(t, topics)
	p := spoolProxy(t, c, func(cfg *kproxy.Config) {
		cfg.SpoolAfterMs = 2500
		cfg.ProduceTimeoutMs = int(produceTimeout / time.Millisecond)
	})
	var mu sync.Mutex
	slept := map[string]bool{} // each topic's first metadata request is slow
	c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		m := req.(*kmsg.MetadataRequest)
		if len(m.Topics) == 1 && m.Topics[0].Topic != nil {
			mu.Lock()
			first := !slept[*m.Topics[0].Topic]
			slept[*m.Topics[0].Topic] = true
			mu.Unlock()
			if first {
				c.SleepControl(func() { time.Sleep(hold) })
			}
		}
		return nil, nil, false
	})
	end := refuseUnlessTransactional(c)
	t.Cleanup(end)

	codes := map[string]int{}
	for _, tr := range transports {
		name := "first-" + tr
		start := time.Now()
		var code int
		var reason string
		switch tr {
		case "commit":
			a := p.post(t, "acks=1&topic="+name+"&key=k", unique(t, name))
			code, reason = a.code, a.body
		case "batch":
			var ab batchAnswerBody
			code, ab = postBatch(t, p, "acks=1", []map[string]any{{"topic": name, "key": "k", "value": name}})
			reason = ab.Error
		}
		took := time.Since(start)
		t.Logf("%s: %d %q after %v", tr, code, reason, took)
		if took > limit {
			t.Errorf("%s answered %d after %v; produce_timeout_ms 3000 promises the answer by 3.25 s", tr, code, took)
		}
		if code != 503 && code != 504 {
			t.Errorf("%s answered %d; the brokers took nothing by the record's deadline: want 503 or 504", tr, code)
		}
		codes[name] = code
	}

	end()
	spoolEmpty(t, p)
	for name, code := range codes {
		if code != 503 {
			continue
		}
		if recs := kafkatest.ReadAll(t, c, kafkaconf.Default(), name); len(recs) != 0 {
			t.Errorf("the record of %s, answered 503 (not written), is in Kafka (offset %d)", name, recs[0].Offset)
		}
	}
}
