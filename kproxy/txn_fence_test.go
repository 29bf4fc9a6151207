package kproxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestAtomicFencedTransactionNotCommittedLater: broker 2 holds an
// atomic batch's produce request past the batch's answer (503, "no record
// of the batch was written") and past its background abort, which gives
// up after produce_timeout_ms, replaces the client and fences its id.
// README: "Kafka bumps the id's epoch and aborts what it left open, so a
// late record of it can never be committed". The fence was an
// InitProducerID with producer id -1, at which the kfake brokers only bump
// the epoch: the transaction stayed open (read_committed consumers held
// back), and the next atomic batch — a new client, same id — committed
// it, the 503 batch's records with it.
func TestAtomicFencedTransactionNotCommittedLater(t *testing.T) {
	c, p := txnProxy(t, 1000)
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, "first")}})); a.code != 200 {
		t.Fatalf("first: %v", a)
	}
	t0 := time.Now()
	for _, key := range []kmsg.Key{kmsg.InitProducerID, kmsg.EndTxn} {
		c.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			switch r := req.(type) {
			case *kmsg.InitProducerIDRequest:
				if r.TransactionalID != nil {
					t.Logf("%v InitProducerID %s id %d epoch %d", time.Since(t0).Round(time.Millisecond), *r.TransactionalID, r.ProducerID, r.ProducerEpoch)
				}
			case *kmsg.EndTxnRequest:
				t.Logf("%v EndTxn commit=%v id %d epoch %d", time.Since(t0).Round(time.Millisecond), r.Commit, r.ProducerID, r.ProducerEpoch)
			}
			return nil, nil, false
		})
	}
	release := make(chan struct{})
	stop := holdOn(c, 2, release)
	recs, _ := failureBatch(t, "held-")
	a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs))
	t.Logf("%v held batch answered %d %q", time.Since(t0).Round(time.Millisecond), a.code, a.Error)
	if a.code != 503 || !strings.Contains(a.Error, "no record of the batch was written") {
		t.Fatalf("held batch: %v, want 503 not written", a)
	}
	answered := time.Now()
	open := !laterVisible(t, c, answered.Add(4*time.Second))
	info := c.PartitionInfo(topic, 0)
	t.Logf("%v partition 0: last stable offset %d, high watermark %d; release broker 2", time.Since(t0).Round(time.Millisecond), info.LastStableOffset, info.HighWatermark)
	close(release)
	stop()
	if open {
		t.Errorf("the 503 batch's transaction still open 4 s after its answer (2.7 s after its id was fenced): read_committed consumers held back")
	}
	next, _ := failureBatch(t, "next-")
	if na := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, next)); na.code != 200 {
		t.Fatalf("next atomic batch: %v", na)
	}
	got := byValue(t, c, topic)
	visible := 0
	for _, r := range recs {
		if got[string(r.value)] != nil {
			visible++
		}
	}
	if visible > 0 {
		t.Errorf("%d of the %d records of the batch answered 503 (\"no record of the batch was written\") are visible to read_committed consumers after the next atomic batch committed", visible, len(recs))
	}
}

// TestAtomicLeftOpenByAnEarlierProcessNotCommitted: a kproxy killed in
// the middle of an atomic batch leaves its transaction open, its records
// written; restarted (the default transactional_id, host and port, is
// kept), its first atomic batch uses the same id. The records of the
// killed one's batch must never become visible: the id is fenced before
// its first client, which aborts the transaction left open (on the kfake
// brokers too, which abort it only at a fence naming the id's producer id
// and epoch).
func TestAtomicLeftOpenByAnEarlierProcessNotCommitted(t *testing.T) {
	c := threeBrokers(t)
	const prefix = "kproxy-restarted"
	killed := kafkatest.Client(t, c, kafkaconf.Default(), kgo.TransactionalID(prefix+"-0"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.TransactionTimeout(time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := killed.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		if err := killed.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte("left-open")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.TransactionalProducers = 1
		cfg.TransactionalID = prefix
	})
	recs, _ := failureBatch(t, "restarted-")
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs)); a.code != 200 {
		t.Fatalf("the restarted process's atomic batch: %v", a)
	}
	got := byValue(t, c, topic)
	if got["left-open"] != nil {
		t.Errorf("the records of the transaction the killed process left open became visible with the restarted process's first atomic batch")
	}
	for _, r := range recs {
		if got[string(r.value)] == nil {
			t.Errorf("record %q of the committed batch not visible", r.value)
		}
	}
}
