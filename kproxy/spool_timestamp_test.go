package kproxy_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolKeepsRequestTime: a record spooled once Kafka has not taken it
// within spool_after_ms (6 s here) is written by the drain with the time
// of its request as its timestamp (README: "the time of the original
// request ... kept"), not the time it reached the spool, 6 s later.
func TestSpoolKeepsRequestTime(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, func(cfg *kproxy.Config) { cfg.SpoolAfterMs, cfg.ProduceTimeoutMs = 6000, 10000 })
	if a := p.post(t, "topic="+topic+"&key=first", unique(t, "first")); a.code != 200 {
		t.Fatalf("first record: %d %s", a.code, a.body)
	}
	end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code)
	sent := time.Now()
	if a := p.post(t, "topic="+topic+"&key=k", unique(t, "commit")); a.code != 202 {
		t.Fatalf("/commit during the outage: %d %s", a.code, a.body)
	}
	spooled := time.Since(sent)
	end()
	deadline := time.Now().Add(20 * time.Second)
	for metricInt(t, p, "kproxy_spool_records") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the spool does not drain")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		if string(r.Key) != "k" {
			continue
		}
		// Up to 3 s between the test's clock and kproxy's reading of the
		// request on a loaded machine; the spool's time would be 6 s late.
		if late := r.Timestamp.Sub(sent); late > 3*time.Second || late < -time.Millisecond {
			t.Fatalf("record sent at %s (answered 202 after %v) has timestamp %s: %v after its request",
				sent.Format(time.StampMilli), spooled, r.Timestamp.Format(time.StampMilli), late)
		}
		return
	}
	t.Fatal("the spooled record is not in kafka")
}
