package kproxy_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestTopicLookupWithinProduceTimeout attacks README's produce_timeout_ms:
// "each record's deadline: retried until then, never sent after it; the
// client gets its answer by then (504 if none, 250 ms later at most)". The
// first request naming a topic has kproxy look the topic up (a metadata
// request, then describe-configs); a slow broker takes 1.9 s to answer
// each. The look-ups are part of the record's deadline, counted from the
// request's arrival, on /commit, /batch and gRPC alike: the answer comes
// by produce_timeout_ms and the grace, and no produce request carrying the
// record leaves after its deadline. Nothing was sent, so the answer is
// 503.
func TestTopicLookupWithinProduceTimeout(t *testing.T) {
	// Each look-up is slowed below the timeout, together past it.
	const timeout, hold = 2 * time.Second, 1900 * time.Millisecond
	transports := []string{"commit", "batch", "grpc"}
	var topics []kafkatest.Topic
	for _, tr := range transports {
		topics = append(topics, kafkatest.Topic{Name: "lookup-" + tr, Partitions: 1})
	}
	c := kafkatest.Start(t, topics)
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = int(timeout / time.Millisecond) })

	var mu sync.Mutex
	slept := map[string]bool{} // "metadata/T", "configs/T": slowed once
	var sent time.Time         // the first produce request of the subtest
	slowOnce := func(what string) bool {
		mu.Lock()
		defer mu.Unlock()
		if slept[what] {
			return false
		}
		slept[what] = true
		return true
	}
	c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		m := req.(*kmsg.MetadataRequest)
		if len(m.Topics) == 1 && m.Topics[0].Topic != nil && slowOnce("metadata/"+*m.Topics[0].Topic) {
			c.SleepControl(func() { time.Sleep(hold) })
		}
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.DescribeConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if r := req.(*kmsg.DescribeConfigsRequest); len(r.Resources) == 1 && slowOnce("configs/"+r.Resources[0].ResourceName) {
			c.SleepControl(func() { time.Sleep(hold) })
		}
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock() // one subtest at a time: its record's request
		if sent.IsZero() {
			sent = time.Now()
		}
		mu.Unlock()
		return nil, nil, false
	})

	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			name := "lookup-" + tr
			mu.Lock()
			sent = time.Time{}
			mu.Unlock()
			start := time.Now()
			var code int
			var reason string
			switch tr {
			case "commit":
				a := g.post(t, "topic="+name+"&acks=-1", []byte{0x01})
				code, reason = a.code, a.body
			case "batch":
				a := g.postBatch(t, "acks=-1&topic="+name, "", mpBatch(t, []brec{{key: "k", value: []byte{0x01}}}))
				code, reason = a.code, a.raw
			case "grpc":
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_, err := g.kp.Produce(ctx, &kproxypb.ProduceRequest{Acks: acksOf(-1), Topic: name,
					Records: []*kproxypb.Record{grec("", "k", "v")}})
				r := refusalOf(err)
				code, reason = 200, r.msg
				if r.detail != nil {
					code = int(r.detail.Status)
				}
			}
			took := time.Since(start)
			mu.Lock()
			at := sent
			mu.Unlock()
			t.Logf("answered %d %q after %v", code, reason, took)
			// The grace (250 ms) and a margin for a loaded machine, below
			// the two look-ups' 3.8 s.
			if limit := timeout + 250*time.Millisecond + 1200*time.Millisecond; took > limit {
				t.Errorf("answered after %v; produce_timeout_ms 2000 promises the answer by 2.25 s", took)
			}
			if !at.IsZero() && at.Sub(start) > timeout {
				t.Errorf("a produce request carrying the record left %v after its arrival, past its deadline", at.Sub(start))
			}
			if code != 503 {
				t.Errorf("answered %d %q; nothing was sent: want 503", code, reason)
			}
		})
	}
}
