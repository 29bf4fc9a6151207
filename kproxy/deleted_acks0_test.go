package kproxy_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestDeletedTopicAcks0Answers404: a topic is deleted while kproxy runs,
// and kproxy's Kafka client learns it from its metadata refresh before
// the next record (its records then fail with UNKNOWN_TOPIC_OR_PARTITION,
// not UNKNOWN_TOPIC_ID). At acks=0 every record is answered 200 at once
// and then counted lost: kproxy must look the topic up again and answer
// 404 ("a topic deleted while kproxy runs, once kproxy has looked it up
// again"), not take records for a topic that is gone, 200 after 200.
func TestDeletedTopicAcks0Answers404(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 2000; cfg.Kafka.MetadataRefreshMs = 1000 })
	decode(t, p.post(t, "topic="+topic+"&key=k&acks=0", []byte{0x01}))

	// Metadata requests naming the topic (or every topic), after the deletion.
	var asked atomic.Int32
	var deleted atomic.Bool
	c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mr := req.(*kmsg.MetadataRequest)
		named := mr.Topics == nil
		for _, rt := range mr.Topics {
			named = named || rt.Topic != nil && *rt.Topic == topic
		}
		if named && deleted.Load() {
			asked.Add(1)
		}
		return nil, nil, false
	})
	adm := kadm.NewClient(kafkatest.Client(t, c, kafkaconf.Default()))
	if _, err := adm.DeleteTopics(context.Background(), topic); err != nil {
		t.Fatal(err)
	}
	deleted.Store(true)
	// The second refresh after the deletion: the first one's answer is in.
	waitFor(t, "kproxy's client to refresh the topic's metadata", func() bool { return asked.Load() >= 2 })

	settled := func() int { // acks=0 records delivered or counted lost
		var d, l int
		d, _ = strconv.Atoi(p.metric(t, `kproxy_records_total{acks="0"}`))
		l, _ = strconv.Atoi(p.metric(t, "kproxy_acks0_lost_records_total"))
		return d + l
	}
	var codes []int
	for i := range 10 {
		before := settled()
		a := p.post(t, "topic="+topic+"&key=k&acks=0", []byte{0x02})
		codes = append(codes, a.code)
		if a.code == 404 {
			t.Logf("deleted topic, acks=0: answers %v", codes)
			return
		}
		if a.code != 200 {
			t.Fatalf("deleted topic, acks=0, record %d: %d %q", i, a.code, a.body)
		}
		waitFor(t, "the record delivered or counted lost", func() bool { return settled() > before })
	}
	t.Errorf("deleted topic, acks=0: answers %v (each record then lost), never 404", codes)
}
