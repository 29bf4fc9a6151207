package kproxy_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolAtomicBatchRefusedWhenTopicSpoolsWhileWaitingForProducer
// attacks README's promise (Spool, "Who is spooled") that an atomic batch
// is refused at once with 503 while one of its topics has records in the
// spool: it would overtake them. The batch was checked only before it
// waited for a transactional producer. Here it waits (the only producer
// is busy with a batch of another topic, whose broker is slow), its topic
// starts to spool meanwhile (a record of its key answered 202), and then
// it gets the producer: it must be refused 503, not committed ahead of
// the spooled record of its key.
func TestSpoolAtomicBatchRefusedWhenTopicSpoolsWhileWaitingForProducer(t *testing.T) {
	const slow = "slow"
	c := twoBrokers(t, []string{slow}, topic) // slow on broker 1, topic on broker 0
	p := spoolProxy(t, c, func(cfg *kproxy.Config) { cfg.TransactionalProducers = 1 })
	warmUp(t, p, "topic="+topic+"&key=w&acks=-1", mp(t, "warm"))
	for _, tn := range []string{topic, slow} {
		if code, ab := postBatch(t, p, "acks=-1&atomic=1", []map[string]any{{"topic": tn, "key": "w", "value": "warm-atomic"}}); code != 200 {
			t.Fatalf("warm atomic %s: %d %+v", tn, code, ab)
		}
	}
	releaseSlow, releaseTopic := make(chan struct{}), make(chan struct{})
	var slowOnce, topicOnce sync.Once
	freeSlow := func() { slowOnce.Do(func() { close(releaseSlow) }) }
	freeTopic := func() { topicOnce.Do(func() { close(releaseTopic) }) }
	defer freeSlow()
	defer freeTopic()
	var slowHeld atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		logTxnBatches(t, c.CurrentNode(), r.(*kmsg.ProduceRequest))
		switch {
		case c.CurrentNode() == 1:
			slowHeld.Add(1)
			c.SleepControl(func() { <-releaseSlow })
		case r.(*kmsg.ProduceRequest).TransactionID == nil: // /commit's and the drain's, not a transaction's
			c.SleepControl(func() { <-releaseTopic })
		}
		return nil, nil, false
	})
	type answer struct {
		code int
		body batchAnswerBody
	}
	first := make(chan answer, 1)
	go func() { // holds the only transactional producer until broker 1 answers
		code, ab := postBatch(t, p, "acks=-1&atomic=1", []map[string]any{{"topic": slow, "key": "s", "value": "first"}})
		first <- answer{code, ab}
	}()
	waitFor(t, "the first atomic batch sent to the slow broker", func() bool { return slowHeld.Load() > 0 })
	second := make(chan answer, 1)
	go func() { // its topic does not spool yet: it waits for the producer
		code, ab := postBatch(t, p, "acks=-1&atomic=1", []map[string]any{{"topic": topic, "key": "k", "value": "atomic"}})
		second <- answer{code, ab}
	}()
	// Admitted, then checked and waiting, well within the spool_after_ms
	// (200 ms) the record below takes to be spooled.
	waitFor(t, "the second atomic batch admitted", func() bool { return p.metric(t, "kproxy_requests_in_flight") == "2" })
	if a := p.post(t, "topic="+topic+"&key=k&acks=-1", mp(t, "spooled")); a.code != 202 {
		t.Fatalf("record of key k: %d %s, want 202 (spooled)", a.code, a.body)
	}
	freeSlow()
	// kfake now and then answers a transaction's produce request after a
	// commit OUT_OF_ORDER_SEQUENCE_NUMBER under load (502, aborted, not
	// written; the batches logged above tell what it was sent): the
	// first batch held the producer all the same, which is all it is for.
	switch a := <-first; {
	case a.code == 502 && strings.Contains(a.body.Error, "OUT_OF_ORDER_SEQUENCE_NUMBER") &&
		strings.Contains(a.body.Error, "no record of the batch was written"):
		t.Logf("first atomic batch (slow topic): %d %+v", a.code, a.body)
	case a.code != 200:
		t.Errorf("first atomic batch (slow topic): %d %+v, want 200", a.code, a.body)
	}
	b := <-second
	freeTopic()
	spoolEmpty(t, p)
	// The spooled record may be there twice (its produce request was out
	// when its topic spooled, and the drain writes its copy); the atomic
	// batch's record must not be there at all.
	var order []string
	atomicWritten := false
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		if string(r.Key) == "k" {
			order = append(order, string(r.Value))
			atomicWritten = atomicWritten || strings.Contains(string(r.Value), "atomic")
		}
	}
	want := "topic " + topic + " has records in the spool; an atomic batch would overtake them"
	if b.code != 503 || !strings.Contains(b.body.Error, want) {
		t.Errorf("atomic batch of key k, given its producer once its topic had a record of k in the spool: %d %+v, want 503 %q",
			b.code, b.body, want)
	}
	if atomicWritten {
		t.Errorf("key k in Kafka: %q, the atomic batch's record written ahead of the spooled one", order)
	}
	// The refused batch's empty transaction was aborted and its producer,
	// the only one, given back in working order.
	if code, ab := postBatch(t, p, "acks=-1&atomic=1", []map[string]any{{"topic": topic, "key": "k", "value": "after"}}); code != 200 {
		t.Errorf("atomic batch once the spool drained: %d %+v, want 200", code, ab)
	}
}

// logTxnBatches logs the producer id, epoch and first sequence number of
// each transactional record batch of r, received by broker node.
func logTxnBatches(t *testing.T, node int32, r *kmsg.ProduceRequest) {
	t.Helper()
	if r.TransactionID == nil {
		return
	}
	for _, rt := range r.Topics {
		for _, rp := range rt.Partitions {
			var b kmsg.RecordBatch
			if err := b.ReadFrom(rp.Records); err != nil {
				t.Logf("broker %d: transactional produce of %s[%d]: unreadable batch: %v", node, rt.Topic, rp.Partition, err)
				continue
			}
			t.Logf("broker %d: transactional produce of %q (id %x) [%d]: producer id %d epoch %d first sequence %d, %d records",
				node, rt.Topic, rt.TopicID, rp.Partition, b.ProducerID, b.ProducerEpoch, b.FirstSequence, b.NumRecords)
		}
	}
}
