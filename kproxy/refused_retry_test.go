package kproxy_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestInvalidRefusalOfRetryAfterUnsureAppendNot503: at acks=-1 the broker
// appends a record's batch and answers NOT_ENOUGH_REPLICAS_AFTER_APPEND
// (the in-sync replicas shrank meanwhile); kgo sends the batch again, and
// the broker refuses the retry as invalid: it validates a batch (its
// timestamps against message.timestamp.*.max.ms, its keys against a
// cleanup.policy made compact meanwhile) before it looks at its sequence
// numbers, which would have told a retry of a written batch. The record is
// in Kafka: it may not be answered 503 ("not written": its client sends it
// again, and it is in Kafka twice).
func TestInvalidRefusalOfRetryAfterUnsureAppendNot503(t *testing.T) {
	for _, code := range []*kerr.Error{kerr.InvalidTimestamp, kerr.InvalidRecord} {
		t.Run(code.Message, func(t *testing.T) {
			c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			p := startProxy(t, c, nil)
			decode(t, p.post(t, "topic="+topic+"&key=k&acks=-1", unique(t, "warm-up")))

			side := kafkatest.Client(t, c, kafkaconf.Default())
			const forwarded = 29_997
			var step atomic.Int32 // 1: appended and answered unsure; 2: the retry refused
			c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				pr := req.(*kmsg.ProduceRequest)
				if pr.TimeoutMillis == forwarded || pr.Acks != -1 {
					return nil, nil, false
				}
				switch step.Add(1) {
				case 1:
					node := c.CurrentNode()
					fwd := *pr
					fwd.TimeoutMillis = forwarded
					c.SleepControl(func() {
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						if _, err := side.Broker(int(node)).Request(ctx, &fwd); err != nil {
							t.Errorf("forwarding the produce request: %v", err)
						}
					})
					return kafkatest.ProduceError(pr, kerr.NotEnoughReplicasAfterAppend.Code), nil, true
				case 2:
					return kafkatest.ProduceError(pr, code.Code), nil, true
				}
				return nil, nil, false
			})

			body := unique(t, "appended, its retry refused")
			a := p.post(t, "topic="+topic+"&key=k&acks=-1", body)
			if step.Load() < 2 {
				t.Fatalf("the batch was not sent again after the unsure answer (%d requests); answered %d %q", step.Load(), a.code, a.body)
			}
			n := inKafka(t, c)[string(body)]
			t.Logf("answered %d %q, in Kafka %d times", a.code, strings.TrimSpace(a.body), n)
			if n != 1 {
				t.Fatalf("the record is in Kafka %d times, want 1 (the first attempt's append)", n)
			}
			if a.code == 503 || a.code == 400 {
				t.Errorf("a record in Kafka answered %d %q: want 504 (may have been written)", a.code, strings.TrimSpace(a.body))
			}
		})
	}
}
