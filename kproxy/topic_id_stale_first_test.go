package kproxy_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestTransientUnknownTopicIDAfterRecreateLosesNothing: kproxy looked the
// topic up (acks=1), then the topic was deleted and created again, and
// only then did the acks=-1 client first write to it: it holds the new
// id. A broker whose metadata lags then answers UNKNOWN_TOPIC_ID for it
// long enough for kgo to give a record up (503). The brokers still give
// the id the client holds: the client must not be purged of the topic,
// which would start its sequence numbers again under the same producer id
// and epoch, and every record answered 200 afterwards must be in Kafka.
func TestTransientUnknownTopicIDAfterRecreateLosesNothing(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 3000 })
	decode(t, p.post(t, "topic="+topic+"&key=k&acks=1", unique(t, "before"))) // kproxy reads the topic's first id
	adm := kadm.NewClient(kafkatest.Client(t, c, kafkaconf.Default()))
	ctx := context.Background()
	if resp, err := adm.DeleteTopics(ctx, topic); err != nil || resp[topic].Err != nil {
		t.Fatalf("delete: %v %v", err, resp[topic].Err)
	}
	if resp, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil || resp.Err != nil {
		t.Fatalf("create: %v %v", err, resp.Err)
	}
	// The acks=-1 client's first record of the topic: it fetches the new id.
	first := decode(t, p.post(t, "topic="+topic+"&key=k&acks=-1", unique(t, "first")))

	refuseUnknownTopicIDThenLoseNothing(t, c, p, first)
}
