package kproxy_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolDeletedTopicNewRecords404: a topic deleted while its records
// wait in the spool: Kafka refuses them to the drain (kept in the spool),
// and a new record for the topic is answered 404 (README), not 202 and
// spooled behind them, where nothing would ever write it while the topic
// does not exist.
func TestSpoolDeletedTopicNewRecords404(t *testing.T) {
	const gone = "gone"
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}, {Name: gone, Partitions: 2}})
	p := spoolProxy(t, c, nil)
	warmUp(t, p, "topic="+gone+"&key=k", unique(t, "first"))
	end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code)
	for i := range 5 {
		if a := p.post(t, "topic="+gone+"&key=k", keySeqValue(t, "k", i)); a.code != 202 {
			t.Fatalf("record %d during the outage: %d %s", i, a.code, a.body)
		}
	}
	adm, ctx := admin(t, c)
	if resp, err := adm.DeleteTopics(ctx, gone); err != nil || resp[gone].Err != nil {
		t.Fatalf("delete %s: %v %v", gone, err, resp[gone].Err)
	}
	end()
	deadline := time.Now().Add(30 * time.Second)
	for metricInt(t, p, "kproxy_spool_drain_errors_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("kafka refused none of the deleted topic's records to the drain")
		}
		time.Sleep(50 * time.Millisecond)
	}
	a := p.post(t, "topic="+gone+"&key=k", keySeqValue(t, "k", 5))
	if a.code != 404 {
		t.Fatalf("new record for the deleted topic: %d %s, want 404", a.code, a.body)
	}
}
