package kproxy_test

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestQueuedBehindRefusedBatchIs503: at acks=1 a record of a key waits in
// kproxy behind the produce request of the key's previous record, which
// the broker then refuses outright (INVALID_RECORD, as a compacted topic
// refuses a keyless record). kgo fails every record of the partition with
// that refusal, the queued one included, which never left kproxy: it is
// not written, and nothing is wrong with it. Its answer must be 503 "not
// written" (send it again), not the 400 that tells the client its record
// is bad, which makes it drop a good record.
func TestQueuedBehindRefusedBatchIs503(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 5000 })
	decode(t, p.post(t, "topic="+topic+"&key=k&acks=1", []byte{0x01})) // connections and metadata are up
	before := endOffsets(t, c, topic)
	written := kproxy.ProduceRequestsWritten(p.srv)

	held := make(chan struct{})
	release := make(chan struct{})
	var produces atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if produces.Add(1) != 1 {
			return nil, nil, false // any later request: handled (written) normally
		}
		close(held)
		c.SleepControl(func() { <-release })
		return kafkatest.ProduceError(req.(*kmsg.ProduceRequest), 87), nil, true // INVALID_RECORD
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	first := make(chan answer, 1)
	go func() { first <- p.post(t, "topic="+topic+"&key=k&acks=1", unique(t, "refused")) }()
	<-held
	// kproxy counts the request written (after the write returns) before
	// the second record is handed over.
	waitFor(t, "the held request counted as written", func() bool {
		return kproxy.ProduceRequestsWritten(p.srv) == written+1
	})
	second := make(chan answer, 1)
	good := unique(t, "queued behind the refused one")
	go func() { second <- p.post(t, "topic="+topic+"&key=k&acks=1", good) }()
	waitFor(t, "the second record queued in kproxy behind the held request", func() bool {
		return kproxy.BufferedRecords(p.srv) == 2
	})
	close(release)

	if a := <-first; a.code != 503 {
		t.Errorf("the refused record: %d %q, want 503 (kproxy cannot tell it from the record behind it)", a.code, a.body)
	}
	a := <-second
	if n := produces.Load(); n != 1 {
		t.Fatalf("%d produce requests reached the broker, want 1: the second record was sent on its own", n)
	}
	if n := endOffsets(t, c, topic) - before; n != 0 {
		t.Fatalf("%d records written", n)
	}
	if a.code != 503 || !strings.Contains(a.body, "not written") {
		t.Errorf("a good record queued behind a refused batch, never sent: %d %q, want 503 \"not written\"", a.code, a.body)
	}
}
