package kproxy_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolSlowDescribeLeavesLaterTopicsLookedUp attacks README's "a
// look-up answered in time leaves the next one spool_after_ms of its own"
// (Spool, topics not known yet): Kafka answers metadata at once, but its
// DescribeConfigs takes longer than spool_after_ms. The first topic of a
// /batch is known then (its configuration not read in time: written with
// max_message_bytes), and must not make the batch's later topics be taken
// as named without asking a broker: t2 (exists) is written, 200, not
// spooled; nosuch (does not exist) is refused 404, not parked in the spool.
func TestSpoolSlowDescribeLeavesLaterTopicsLookedUp(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t1", Partitions: 1}, {Name: "t2", Partitions: 1}})
	p := spoolProxy(t, c, func(cfg *kproxy.Config) {
		cfg.SpoolAfterMs = 500
		cfg.ProduceTimeoutMs = 5000
		cfg.AutoCreateTopics = false
	})
	c.ControlKey(int16(kmsg.DescribeConfigs), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { time.Sleep(1500 * time.Millisecond) })
		return nil, nil, false
	})
	code, ab := postBatch(t, p, "acks=1", []map[string]any{
		{"topic": "t1", "key": "a", "value": "1"}, {"topic": "t2", "key": "a", "value": "2"}})
	t.Logf("[t1, t2]: %d %+v; kproxy_spooled_total %d", code, ab, metricInt(t, p, "kproxy_spooled_total"))
	if code != 200 {
		t.Errorf("[t1, t2] with Kafka answering metadata: %d, want 200", code)
	}
	code, ab = postBatch(t, p, "acks=1", []map[string]any{
		{"topic": "t1", "key": "a", "value": "3"}, {"topic": "nosuch", "key": "a", "value": "4"}})
	t.Logf("[t1, nosuch]: %d %+v; kproxy_spool_records %s", code, ab, p.metric(t, "kproxy_spool_records"))
	if code != 404 {
		t.Errorf("[t1, nosuch] with Kafka answering metadata: %d, want 404", code)
	}
}
