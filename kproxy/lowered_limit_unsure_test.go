package kproxy_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestLoweredTopicLimitAfterUnsureAppendNot503: at acks=-1 the broker
// appends a batch of two records of 1 kB and answers
// NOT_ENOUGH_REPLICAS_AFTER_APPEND (the in-sync replicas shrank meanwhile);
// the topic's max.message.bytes is lowered to 1,500 bytes before kgo's
// retry of the batch, which the broker then refuses as too large (its size
// is checked before its sequence numbers). Each record fits the new limit,
// and both are in Kafka: neither may be answered 503 ("not written": a
// client sends it again, and it is in Kafka twice).
func TestLoweredTopicLimitAfterUnsureAppendNot503(t *testing.T) {
	for _, via := range []string{"commit", "batch"} {
		t.Run(via, func(t *testing.T) {
			c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			// A long linger: the two records posted at once must share a
			// produce batch, also when one of them arrives late.
			p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.LingerMs = 500 })
			// kproxy reads the topic's limit (the default) at its first record.
			decode(t, p.post(t, "topic="+topic+"&acks=1", unique(t, "first")))

			opts, err := kafkaconf.Default().Opts("test-side", c.ListenAddrs(), nil)
			if err != nil {
				t.Fatal(err)
			}
			side, err := kgo.NewClient(opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(side.Close)
			const forwarded, limit = 29_998, 1500
			var injected atomic.Bool
			c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				pr := req.(*kmsg.ProduceRequest)
				size := 0
				for _, rt := range pr.Topics {
					for _, rp := range rt.Partitions {
						size += len(rp.Records)
					}
				}
				if pr.TimeoutMillis == forwarded || pr.Acks != -1 || size <= limit || injected.Swap(true) {
					return nil, nil, false
				}
				node := c.CurrentNode()
				fwd := *pr
				fwd.TimeoutMillis = forwarded
				c.SleepControl(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					if _, err := side.Broker(int(node)).Request(ctx, &fwd); err != nil {
						t.Errorf("forwarding the produce request: %v", err)
					}
					resp, err := kadm.NewClient(side).AlterTopicConfigs(ctx,
						[]kadm.AlterConfig{{Name: "max.message.bytes", Value: kadm.StringPtr(strconv.Itoa(limit))}}, topic)
					if err == nil {
						_, err = resp.On(topic, nil)
					}
					if err != nil {
						t.Errorf("lowering max.message.bytes: %v", err)
					}
				})
				return kafkatest.ProduceError(pr, kerr.NotEnoughReplicasAfterAppend.Code), nil, true
			})

			bodies := [][]byte{
				unique(t, "unsure-0-"+strings.Repeat("x", 1000)),
				unique(t, "unsure-1-"+strings.Repeat("x", 1000)),
			}
			codes := make([]int, len(bodies))
			reasons := make([]string, len(bodies))
			switch via {
			case "commit":
				var wg sync.WaitGroup
				for i, b := range bodies {
					wg.Go(func() {
						a := p.post(t, "topic="+topic+"&key=k&acks=-1", b)
						codes[i], reasons[i] = a.code, strings.TrimSpace(a.body)
					})
				}
				wg.Wait()
			case "batch":
				a := p.postBatch(t, "topic="+topic+"&acks=-1", "", mpBatch(t, []brec{{key: "k", value: bodies[0]}, {key: "k", value: bodies[1]}}))
				if len(a.Results) != len(bodies) {
					for i := range codes {
						codes[i], reasons[i] = a.code, a.Error
					}
				}
				for i, r := range a.Results {
					codes[i], reasons[i] = r.Status, r.Error
				}
			}
			if !injected.Load() {
				t.Fatalf("the two records were not sent in one batch of more than %d bytes; answers %v", limit, codes)
			}
			kafka := inKafka(t, c)
			for i, b := range bodies {
				got := kafka[string(b)]
				t.Logf("record %d: %d %q, in Kafka %d times", i, codes[i], reasons[i], got)
				if codes[i] == 503 && got > 0 {
					t.Errorf("record %d answered 503 (%q) is in Kafka %d times", i, reasons[i], got)
				}
				if codes[i] == 200 && got != 1 {
					t.Errorf("record %d answered 200 is in Kafka %d times", i, got)
				}
			}
		})
	}
}
