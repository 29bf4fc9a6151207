package kproxy_test

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc/codes"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The tests in this file attack the spool's promises over gRPC (README
// "Spool"): Produce and ProduceStream spool during an outage (OK, status
// 202, spooled results), spool = false is never spooled, atomic requests
// never overtake spooled records, and every spooled record reaches Kafka.

// spoolGRPC is spoolProxy serving gRPC too.
func spoolGRPC(t *testing.T, c *kfake.Cluster, edit func(*kproxy.Config)) *gproxy {
	t.Helper()
	dir := t.TempDir()
	return startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.SpoolDir = dir
		cfg.SpoolAfterMs = 200
		cfg.ProduceTimeoutMs = 3000
		if edit != nil {
			edit(cfg)
		}
	})
}

// refuseUnlessTransactional answers every produce request that is not a
// transaction's with NOT_LEADER_OR_FOLLOWER, until end: an outage for
// kproxy's live clients and the spool's drain, while atomic batches (their
// transactional clients) are written.
func refuseUnlessTransactional(c *kfake.Cluster) (end func()) {
	var over atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if over.Load() {
			return nil, nil, false
		}
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if pr.TransactionID != nil || pr.Acks == 0 {
			return nil, nil, false
		}
		return refusedProduce(pr, kerr.NotLeaderForPartition.Code), nil, true
	})
	return func() { over.Store(true) }
}

// TestSpoolAtomicNeverOvertakes: while a topic has records in the spool, an
// atomic batch for it (written by a transactional client of its own, which
// Kafka takes) is refused with 503 — over HTTP and gRPC (Unavailable) —
// instead of reaching Kafka before them; once the spool has drained it is
// written, after the spooled records.
func TestSpoolAtomicNeverOvertakes(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}, {Name: "other", Partitions: 1}})
	g := spoolGRPC(t, c, func(cfg *kproxy.Config) { cfg.TransactionalProducers = 1 })
	end := refuseUnlessTransactional(c)
	t.Cleanup(end)

	if a := g.post(t, "topic="+topic+"&key=a", unique(t, "spooled-1")); a.code != 202 {
		t.Fatalf("record during the outage: %d %q", a.code, a.body)
	}
	want := "topic " + topic + " has records in the spool; an atomic batch would overtake them"
	// The batch's first record is for a topic that does not spool: the
	// second one's topic is named, and its index given.
	code, ab := postBatch(t, g.proxy, "acks=-1&atomic=1", []map[string]any{
		{"topic": "other", "key": "a", "value": "atomic-other"},
		{"topic": topic, "key": "a", "value": "atomic-1"},
	})
	if code != 503 || !strings.Contains(ab.Error, want) || len(ab.Results) != 2 || ab.Results[0].Status != 503 {
		t.Errorf("atomic batch while its topic spools: %d %+v, want 503 %q", code, ab, want)
	}
	_, err := g.produce(t, nil, &kproxypb.ProduceRequest{Acks: acksOf(-1), Atomic: true, Topic: topic,
		Records: []*kproxypb.Record{grec("", "a", "atomic-grpc")}})
	if r := refusalOf(err); r.code != codes.Unavailable || !strings.Contains(r.msg, want) || r.detail == nil || r.detail.Status != 503 {
		t.Errorf("atomic Produce while its topic spools: %v, want Unavailable %q", r, want)
	}

	end()
	spoolEmpty(t, g.proxy)
	code, ab = postBatch(t, g.proxy, "acks=-1&atomic=1", []map[string]any{{"topic": topic, "key": "a", "value": "atomic-2"}})
	if code != 200 {
		t.Fatalf("atomic batch after the drain: %d %+v", code, ab)
	}
	var order []string
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		order = append(order, string(r.Value))
	}
	if len(order) != 2 || order[0] != string(unique(t, "spooled-1")) || order[1] != `"atomic-2"` {
		t.Errorf("topic holds %q, want the spooled record then atomic-2 only", order)
	}
	if got := byValue(t, c, "other"); len(got) != 0 {
		t.Errorf("the refused atomic batch's record for other is in kafka: %v", got)
	}
}
