package kproxy_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestBatchAtomicLateAckNotCounted: README's kproxy_records_total is
// "records Kafka accepted" — for an atomic batch, once its transaction
// committed. A record of an atomic batch that Kafka acknowledges after
// the batch was answered (its produce request held past the records'
// deadline) is in a transaction that is then aborted: it was never
// written, and is not counted. It was, as a late acceptance of an
// ordinary batch is.
func TestBatchAtomicLateAckNotCounted(t *testing.T) {
	c, p := txnProxy(t, 1000)
	warm, _ := failureBatch(t, "warm-")
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, warm)); a.code != 200 {
		t.Fatalf("first atomic batch: %v", a)
	}
	want := p.metric(t, `kproxy_records_total{acks="-1"}`)
	if want != "12" {
		t.Fatalf(`kproxy_records_total{acks="-1"} after a committed batch of 12: %s`, want)
	}

	held := make(chan struct{})
	stop := onBroker(c, 2, func(*kmsg.ProduceRequest) (kmsg.Response, error, bool) {
		c.SleepControl(func() { <-held })
		return nil, nil, false // then the broker appends and acknowledges
	})
	recs, _ := failureBatch(t, "late-")
	reply := make(chan batchAnswer, 1)
	go func() { reply <- p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs)) }()
	var a batchAnswer
	select {
	case a = <-reply:
	case <-time.After(10 * time.Second):
		close(held)
		t.Fatal("atomic batch with partition 2's produce request held: no answer in 10s")
	}
	stop()
	close(held)
	if a.code != 503 {
		t.Fatalf("atomic batch with partition 2's produce request held past the deadline: %v, want 503", a)
	}
	// The transactional producer is back once the abort ended: the next
	// batch commits, and only its records are added.
	next, _ := failureBatch(t, "next-")
	deadline := time.Now().Add(10 * time.Second)
	for {
		a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, next))
		if a.code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("atomic batch after the aborted one: %v", a)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := p.metric(t, `kproxy_records_total{acks="-1"}`); got != "24" {
		t.Errorf(`kproxy_records_total{acks="-1"} = %s after two committed batches of 12 and one aborted, want 24 `+
			"(the aborted batch's records acknowledged late were counted)", got)
	}
	got := byValue(t, c, topic)
	for _, r := range recs {
		if got[string(r.value)] != nil {
			t.Errorf("record %q of the aborted batch visible", r.value)
		}
	}
}
