package kproxy_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolFlipKeepsSpoolZeroRecordFirst attacks per-key order across the
// moment a topic starts spooling (README: "No later record of a key
// reaches Kafka before an earlier one's first copy"), when the earlier
// record has spool=0. Record a#0 (spool=0) is in kgo, which retries it
// (the leader refuses acks=1 writes); a#1 (may spool) is handed to the
// same client behind it. Kafka does not answer within spool_after_ms: the
// flip takes a#1 into the spool, while a#0, never spooled, stays in kgo.
// The drain (acks=-1, let through) must not write a#1 while kgo may still
// write a#0: a#1 waits for a#0's answer, then is spooled (202) and
// drained after it.
func TestSpoolFlipKeepsSpoolZeroRecordFirst(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, nil) // spool_after_ms 200, produce_timeout_ms 3000
	warmUp(t, p, "acks=1&topic="+topic+"&key=w", keySeqValue(t, "w", 0))
	var over atomic.Bool
	var refusedWrites atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if over.Load() {
			return nil, nil, false
		}
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if pr.Acks != 1 {
			return nil, nil, false // the drain's writes (acks=-1) get through
		}
		refusedWrites.Add(1)
		return kafkatest.ProduceError(pr, kerr.NotLeaderForPartition.Code), nil, true
	})
	var wg sync.WaitGroup
	var first, second answer
	wg.Add(2)
	go func() {
		defer wg.Done()
		first = p.post(t, "acks=1&spool=0&topic="+topic+"&key=a", keySeqValue(t, "a", 0))
	}()
	waitFor(t, "a#0 sent to kafka and refused", func() bool { return refusedWrites.Load() > 0 })
	go func() {
		defer wg.Done()
		second = p.post(t, "acks=1&topic="+topic+"&key=a", keySeqValue(t, "a", 1))
	}()
	// Long enough for the flip (200 ms) and for the drain to write a#1
	// were it spooled at once; a#0's deadline (3 s) is not reached.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) && metricInt(t, p, "kproxy_spool_drained_total") == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	over.Store(true)
	wg.Wait()
	if first.code != 200 || second.code != 202 {
		t.Fatalf("a#0 (spool=0): %d %q, want 200; a#1: %d %q, want 202", first.code, first.body, second.code, second.body)
	}
	spoolEmpty(t, p)
	checkSpooledOrder(t, c, map[string][]int{"a": {0, 1}})
}
