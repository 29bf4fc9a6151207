package kproxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc/codes"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestTooLargeBatchWithUnreadLimitNot413: Kafka refuses the batch holding a
// record of a few bytes as too large (MESSAGE_TOO_LARGE), and kproxy, which
// then reads the topic's max.message.bytes again to tell a record too large
// from one refused with its batch, gets no metadata answer within the
// record's produce_timeout_ms. Nothing says the record is too large: 413
// tells a client never to send it again, so a record the topic takes would
// be dropped. It is answered 503 (not written: the broker refused it) with
// a reason saying the limit could not be read, /commit and /batch alike.
func TestTooLargeBatchWithUnreadLimitNot413(t *testing.T) {
	for _, via := range []string{"commit", "batch"} {
		t.Run(via, func(t *testing.T) {
			c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 1500 })
			decode(t, p.post(t, "topic="+topic+"&acks=1", unique(t, "first")))

			f := kafkatest.NewFaults(t, c)
			f.ErrorProduce(1, kerr.MessageTooLarge.Code)
			f.Sleep(int16(kmsg.Metadata), 4, 2*time.Second)
			body := unique(t, "fits")
			var code int
			var reason string
			if via == "commit" {
				a := p.post(t, "topic="+topic+"&acks=1", body)
				code, reason = a.code, strings.TrimSpace(a.body)
			} else {
				a := p.postBatch(t, "topic="+topic+"&acks=1", "", mpBatch(t, []brec{{key: "k", value: body}}))
				if len(a.Results) != 1 {
					t.Fatalf("batch answered %d %q, want one result", a.code, a.raw)
				}
				code, reason = a.Results[0].Status, a.Results[0].Error
			}
			if code != 503 || !strings.Contains(reason, "could not read") {
				t.Fatalf("a record of %d bytes refused with its batch as too large, the topic's limit unread: %d %q, want 503 saying the limit could not be read", len(body), code, reason)
			}
			if n := inKafka(t, c)[string(body)]; n != 0 {
				t.Errorf("the record answered 503 is in Kafka %d times", n)
			}
		})
	}
}

// TestGRPCTooLargeBatchWithUnreadLimitNot413: the same through gRPC, whose
// call's deadline (1 s) bounds the look-up of the topic's limit: the
// brokers hold every metadata request for 3 s, the call is answered
// Unavailable (503, not written) saying the limit could not be read, not
// ResourceExhausted (413).
func TestGRPCTooLargeBatchWithUnreadLimitNot413(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, nil)
	if _, err := g.produce(t, nil, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", "first")}}); err != nil {
		t.Fatalf("first: %v", refusalOf(err))
	}
	f := kafkatest.NewFaults(t, c)
	f.ErrorProduce(1, kerr.MessageTooLarge.Code)
	f.Sleep(int16(kmsg.Metadata), 4, 3*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := g.kp.Produce(ctx, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", "fits")}})
	r := refusalOf(err)
	if r.code != codes.Unavailable || r.detail == nil || r.detail.Status != 503 || !strings.Contains(r.msg, "could not read") {
		t.Fatalf("%v, want Unavailable, status 503, saying the limit could not be read", r)
	}
	if n := inKafka(t, c)["fits"]; n != 0 {
		t.Errorf("the record answered 503 is in Kafka %d times", n)
	}
}
