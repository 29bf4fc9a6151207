package kproxy_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
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

// TestQueuedBehindPolicyRefusalNot400: as TestQueuedBehindRefusedBatchIs503,
// with the broker refusing the first batch as POLICY_VIOLATION (a broker's
// or a plugin's policy on the records' content): kgo fails the record
// queued behind it with that refusal too. It never left, and nothing is
// wrong with it: 503 "not written", not the 400 that has its client drop
// it.
func TestQueuedBehindPolicyRefusalNot400(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	decode(t, p.post(t, "topic="+topic+"&key=k", unique(t, "warm-up")))

	first, queued, _ := refuseFirstQueueSecond(t, c, p, kerr.PolicyViolation.Code)
	if a := first; a.code != 400 && a.code != 503 {
		t.Errorf("the refused record: %d %q, want 400 or 503", a.code, a.body)
	}
	goodRecordAnswered(t, "queued behind the refused batch", queued, inKafka(t, c)[string(unique(t, "queued"))])
}

// TestQueuedBehindTooLargeRefusalPipeliningNot413: with
// max_in_flight_requests 2 a partition's second batch waits in kgo until
// the partition's first request on a connection is answered. The broker
// refuses the first batch as too large (MESSAGE_TOO_LARGE); kgo fails the
// waiting record with that refusal. The record fits the topic's limit and
// never left: 503 "not written", not the 413 that has its client drop it.
func TestQueuedBehindTooLargeRefusalPipeliningNot413(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.MaxInFlightRequests = 2 })

	first, queued, held := refuseFirstQueueSecond(t, c, p, kerr.MessageTooLarge.Code)
	if a := first; a.code != 503 && a.code != 504 {
		t.Errorf("the refused record, which fits: %d %q, want 503 or 504", a.code, a.body)
	}
	if n := held.Load(); n != 1 {
		t.Fatalf("%d produce requests reached the broker, want 1: the second record was sent", n)
	}
	goodRecordAnswered(t, "queued behind the refused batch", queued, inKafka(t, c)[string(unique(t, "queued"))])
}

// refuseFirstQueueSecond has the broker hold the next produce request of
// p and answer it code, posts a record of key k that it holds, and a
// second of k once the first is at the broker; once the second waits in
// kgo behind it, the broker answers. It returns both answers and the
// produce requests that reached the broker.
func refuseFirstQueueSecond(t *testing.T, c *kfake.Cluster, p *proxy, code int16) (first, queued answer, held *atomic.Int32) {
	t.Helper()
	release := make(chan struct{})
	unhold := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unhold)
	held = new(atomic.Int32)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if held.Add(1) != 1 {
			return nil, nil, false
		}
		c.SleepControl(func() { <-release })
		return kafkatest.ProduceError(req.(*kmsg.ProduceRequest), code), nil, true
	})
	firstc, queuedc := make(chan answer, 1), make(chan answer, 1)
	go func() { firstc <- p.post(t, "topic="+topic+"&key=k", unique(t, "refused")) }()
	waitFor(t, "the first request at the broker", func() bool { return held.Load() == 1 })
	go func() { queuedc <- p.post(t, "topic="+topic+"&key=k", unique(t, "queued")) }()
	waitFor(t, "the second record waiting in kgo", func() bool { return kproxy.BufferedRecords(p.srv) == 2 })
	unhold()
	return <-firstc, <-queuedc, held
}
