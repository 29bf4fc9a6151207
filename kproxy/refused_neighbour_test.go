package kproxy_test

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestIdempotentRecordBehindRefusedBatchNot400: at acks=-1 kgo sends a
// partition's next produce request while the one before is out (up to 5).
// The broker refuses the first batch on its own merits (INVALID_RECORD:
// nothing of it appended), and then the second as out of sequence: not
// written either. kgo fails the second batch's record with the first one's
// refusal, before or without its own answer. That record was good: a 400
// ("Kafka rejected the record as invalid") tells its client to drop it,
// and it is lost. Not written, it must be 503 (or written and 200).
func TestIdempotentRecordBehindRefusedBatchNot400(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	decode(t, p.post(t, "topic="+topic+"&key=k&acks=-1", unique(t, "warm-up"))) // a first answer: kgo pipelines from now on

	release := make(chan struct{})
	var seen atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if seen.Add(1) > 1 {
			return nil, nil, false // the second request: the broker's own answer
		}
		c.KeepControl()
		c.SleepControl(func() { <-release })
		return kafkatest.ProduceError(req.(*kmsg.ProduceRequest), kerr.InvalidRecord.Code), nil, true
	})
	written := kproxy.IdempotentRequestsWritten(p.srv)
	first, second := make(chan answer, 1), make(chan answer, 1)
	go func() { first <- p.post(t, "topic="+topic+"&key=k&acks=-1", unique(t, "refused")) }()
	waitFor(t, "the first request at the broker", func() bool { return seen.Load() == 1 })
	go func() { second <- p.post(t, "topic="+topic+"&key=k&acks=-1", unique(t, "behind")) }()
	waitFor(t, "the second request written behind it", func() bool { return kproxy.IdempotentRequestsWritten(p.srv) == written+2 })
	close(release)

	a, b := <-first, <-second
	// The second request written after it may, for all kproxy sees, have
	// been a retry of its batch after an unsure append: 504 is honest too.
	if a.code != 503 && a.code != 504 {
		t.Errorf("the refused record: %d %q, want 503 or 504 (kproxy cannot tell it from the one behind it)", a.code, a.body)
	}
	kafka := inKafka(t, c)
	if n := kafka[string(unique(t, "refused"))]; n != 0 {
		t.Errorf("the refused record is in Kafka %d times", n)
	}
	goodRecordAnswered(t, "behind the refused batch", b, kafka[string(unique(t, "behind"))])
}

// goodRecordAnswered checks the answer of a good record that kgo failed
// with another batch's refusal, in Kafka n times: 503 "not written" and
// not in Kafka (or 200 and in Kafka once), never a 400 that has its
// client drop it.
func goodRecordAnswered(t *testing.T, where string, b answer, n int) {
	t.Helper()
	t.Logf("record %s: %d %q, in Kafka %d times", where, b.code, strings.TrimSpace(b.body), n)
	switch {
	case b.code == 200 && n == 1:
	case b.code == 503 && n == 0 && strings.Contains(b.body, "not written"):
	default:
		t.Errorf("the good record %s: answered %d %q, in Kafka %d times; want 503 \"not written\" (or 200 and written once)", where, b.code, strings.TrimSpace(b.body), n)
	}
}

// TestQueuedRecordBehindRefusedBatchNot400: with one produce request per
// broker at a time (acks=1, max_in_flight_requests 1) a record waits in
// kgo while its partition's request before it is out. The broker refuses
// that request's batch (INVALID_RECORD); kgo fails the waiting record with
// the refusal: it never left. Meanwhile another partition's request went to
// another broker and was answered: "a produce request was written since the
// record was queued" no longer says the record may have been in the refused
// one. Its 400 tells the client to drop a good record; it must be 503.
func TestQueuedRecordBehindRefusedBatchNot400(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 2}}) // partition p led by broker p
	p := startProxy(t, c, nil)
	keys := map[int32]string{} // a key of each partition
	for i := 0; len(keys) < 2; i++ {
		if i == 100 {
			t.Fatalf("no key of each partition among 100: %v", keys)
		}
		k := "k" + strings.Repeat("x", i)
		keys[decode(t, p.post(t, "topic="+topic+"&key="+k, unique(t, "warm-up-"+k))).Partition] = k
	}

	release := make(chan struct{})
	var held atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if held.Load() > 0 || len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 || pr.Topics[0].Partitions[0].Partition != 0 {
			return nil, nil, false
		}
		held.Add(1)
		c.SleepControl(func() { <-release })
		return kafkatest.ProduceError(pr, kerr.InvalidRecord.Code), nil, true
	})
	first, queued := make(chan answer, 1), make(chan answer, 1)
	go func() { first <- p.post(t, "topic="+topic+"&key="+keys[0], unique(t, "refused")) }()
	waitFor(t, "the first request at the broker", func() bool { return held.Load() == 1 })
	go func() { queued <- p.post(t, "topic="+topic+"&key="+keys[0], unique(t, "queued")) }()
	waitFor(t, "the second record waiting in kgo", func() bool { return kproxy.BufferedRecords(p.srv) == 2 })
	decode(t, p.post(t, "topic="+topic+"&key="+keys[1], unique(t, "other partition"))) // a request written and answered meanwhile
	close(release)

	a, b := <-first, <-queued
	if a.code != 400 && a.code != 503 {
		t.Errorf("the refused record: %d %q, want 400 or 503", a.code, a.body)
	}
	kafka := inKafka(t, c)
	goodRecordAnswered(t, "queued behind the refused batch", b, kafka[string(unique(t, "queued"))])
}
