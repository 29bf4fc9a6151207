package kproxy_test

import (
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestAtomicBatchAfterGivenUpAppendVisible: an atomic batch whose batch a
// leader appended and then refused NOT_LEADER_OR_FOLLOWER until the
// deadline is aborted; the next atomic batch of as many records on the
// same transactional client must be visible when it is answered 200. Its
// sequence numbers are those of the aborted batch the broker holds: on
// brokers before KIP-890 (an abort does not bump the producer epoch) the
// broker would take it for a retry of that batch, answer with its offset
// and write nothing, and the commit would make nothing visible.
func TestAtomicBatchAfterGivenUpAppendVisible(t *testing.T) {
	pre890 := kversion.Stable()
	pre890.SetMaxKeyVersion(int16(kmsg.Produce), 11)
	pre890.SetMaxKeyVersion(int16(kmsg.EndTxn), 4)
	pre890.SetMaxKeyVersion(int16(kmsg.TxnOffsetCommit), 4)
	for _, tc := range []struct {
		name string
		opts []kfake.Opt
	}{
		{"kip890", nil},
		{"before-kip890", []kfake.Opt{kfake.MaxVersions(pre890)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}}, tc.opts...)
			p := startProxy(t, c, func(cfg *kproxy.Config) {
				cfg.TransactionalProducers = 1
				cfg.ProduceTimeoutMs = 1500
			})
			batch := func(label string) []brec {
				return []brec{{key: "k", value: mp(t, label+"-0")}, {key: "k", value: mp(t, label+"-1")}}
			}
			post := func(recs []brec) batchAnswer {
				return p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs))
			}
			if a := post(batch("first")); a.code != 200 {
				t.Fatalf("first atomic batch: %v", a)
			}
			f := kafkatest.NewFaults(t, c)
			f.AppendThen(1, kerr.NotLeaderForPartition.Code)
			end := f.Outage(kerr.NotLeaderForPartition.Code)
			a := post(batch("given-up"))
			end()
			if a.code == 200 || f.Injected() < 2 {
				t.Fatalf("atomic batch appended, then refused until its deadline: %v (%d faults): the test proves nothing", a, f.Injected())
			}
			for i := range 3 {
				next := batch("next" + strconv.Itoa(i))
				if a := post(next); a.code != 200 {
					t.Fatalf("atomic batch %d after the given-up one: %v", i, a)
				}
				got := byValue(t, c, topic)
				for _, r := range next {
					if got[string(r.value)] == nil {
						t.Errorf("atomic batch %d after the given-up one answered 200, record %q not visible", i, r.value)
					}
				}
			}
		})
	}
}
