package kproxy_test

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolFullBatchKeepsKeyOrder: a batch for a spooling topic whose
// records do not all fit in the spool. Its records of key k are a large
// one, then a small one: when the spool refuses the large one as full, it
// must not take the small one (202, drained to Kafka without the one
// before it), or the batch's records of one key lose their order (README:
// "Records of one key keep their order").
func TestSpoolFullBatchKeepsKeyOrder(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, func(cfg *kproxy.Config) { cfg.SpoolMaxBytes = 1 << 20 })
	end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code)
	defer end()
	// The topic spools from here on: the batch's records go to the
	// spool one by one.
	if a := p.post(t, "topic="+topic+"&key=s", unique(t, "first")); a.code != 202 {
		t.Fatalf("first record during the outage: %d %s", a.code, a.body)
	}
	code, a := postBatch(t, p, "topic="+topic, []map[string]any{
		{"key": "a", "value": strings.Repeat("a", 400_000)}, // fits
		{"key": "k", "value": strings.Repeat("k", 700_000)}, // does not fit after a
		{"key": "k", "value": "the record after it, small"}, // would fit
	})
	if len(a.Results) != 3 {
		t.Fatalf("batch: %d %+v", code, a)
	}
	if a.Results[1].Status == 202 || a.Results[1].Spooled {
		t.Fatalf("the large record of k was spooled in a spool of 1 MiB holding 400 KB: %d %+v", code, a.Results)
	}
	if r := a.Results[2]; r.Status == 202 || r.Spooled {
		t.Fatalf("the record of k after one refused (%d) was spooled (%d): it reaches Kafka without the one before it; %+v",
			a.Results[1].Status, r.Status, a.Results)
	}
}
