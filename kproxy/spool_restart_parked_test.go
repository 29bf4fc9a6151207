package kproxy_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolRestartWithParkedTopicWritesDrainedRecordsOnce: a topic
// deleted while its records wait in the spool holds the spool's watermark
// at its oldest record, while another topic's records, spooled after it,
// drain. kproxy stopped (SIGTERM) and started again wrote every one of
// those drained records to Kafka a second time, and its
// kproxy_spool_replayed_records counted them, though the stop had Kafka's
// acknowledgement of each: only the watermark was kept.
func TestSpoolRestartWithParkedTopicWritesDrainedRecordsOnce(t *testing.T) {
	const gone = "gone"
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}, {Name: gone, Partitions: 2}})
	dir := t.TempDir()
	edit := func(cfg *kproxy.Config) {
		cfg.SpoolDir = dir
		cfg.SpoolAfterMs = 200
		cfg.ProduceTimeoutMs = 3000
	}
	p := runProxy(t, newServer(t, c, edit))
	warmUp(t, p, "topic="+gone+"&key=g", unique(t, "first"))
	warmUp(t, p, "topic="+topic+"&key=warm", keySeqValue(t, "warm", 0))
	end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code)
	for i := range 3 {
		if a := p.post(t, "topic="+gone+"&key=g", keySeqValue(t, "g", i)); a.code != 202 {
			t.Fatalf("record %d of %s during the outage: %d %s", i, gone, a.code, a.body)
		}
	}
	want := map[string][]int{"warm": {0}}
	for i := range 20 {
		key := []string{"k1", "k2", "k3", "k4"}[i%4]
		if a := p.post(t, "topic="+topic+"&key="+key, keySeqValue(t, key, i)); a.code != 202 {
			t.Fatalf("record %d during the outage: %d %s", i, a.code, a.body)
		}
		want[key] = append(want[key], i)
	}
	adm, ctx := admin(t, c)
	if resp, err := adm.DeleteTopics(ctx, gone); err != nil || resp[gone].Err != nil {
		t.Fatalf("delete %s: %v %v", gone, err, resp[gone].Err)
	}
	clientsAnswered(t, p)
	end()
	spoolHolds(t, p, 3) // the other topic drained; the deleted one's records wait
	if err := p.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	p = runProxy(t, newServer(t, c, edit))
	if n := metricInt(t, p, "kproxy_spool_replayed_records"); n != 3 {
		t.Errorf("kproxy_spool_replayed_records after the restart: %d, want 3 (the deleted topic's)", n)
	}
	spoolHolds(t, p, 3)
	if dups := checkSpooledOrder(t, c, want); dups != 0 {
		t.Errorf("%d records of %s in kafka twice after the restart; kafka acknowledged each before the stop", dups, topic)
	}
}

// spoolHolds waits (up to 30 s) until the spool holds n records.
func spoolHolds(t *testing.T, p *proxy, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for metricInt(t, p, "kproxy_spool_records") != n {
		if time.Now().After(deadline) {
			t.Fatalf("kproxy_spool_records %d, want %d", metricInt(t, p, "kproxy_spool_records"), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
