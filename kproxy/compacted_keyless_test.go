package kproxy_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestKeylessRecordToCompactedTopicRefused: Kafka refuses a record without
// a key to a compacted topic (INVALID_RECORD), and with it the batch that
// holds it: other clients' records sent with it are refused alike, and
// kproxy cannot tell whose record the refusal was for (503 for every one).
// kproxy reads cleanup.policy with max.message.bytes, and refuses such a
// record itself, 400 naming the reason, before anything is sent: on
// /commit, in /batch (the record's index, nothing of the batch written) and
// over gRPC. A topic set to cleanup.policy delete takes keyless records
// again once what kproxy read of it is older than the recheck interval.
func TestKeylessRecordToCompactedTopicRefused(t *testing.T) {
	kproxy.SetCompactedRecheck(t, 300*time.Millisecond)
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	setTopicConfig(t, c, topic, "cleanup.policy", "compact,delete")
	g := startGRPC(t, c, nil)
	p := g.proxy

	if a := p.post(t, "topic="+topic, unique(t, "keyless")); a.code != 400 || !strings.Contains(a.body, "compacted") {
		t.Errorf("/commit without a key to a compacted topic: %d %q, want 400 naming it compacted", a.code, a.body)
	}
	if a := p.post(t, "topic="+topic+"&key=&acks=0", unique(t, "empty key acks 0")); a.code != 400 {
		t.Errorf("/commit with an empty key at acks=0 to a compacted topic: %d %q, want 400", a.code, a.body)
	}
	decode(t, p.post(t, "topic="+topic+"&key=k", unique(t, "keyed")))
	recs := []brec{{key: "a", value: mp(t, "b0")}, {key: "b", value: mp(t, "b1")}, {noKey: true, value: mp(t, "b2")}, {key: "c", value: mp(t, "b3")}}
	if a := p.postBatch(t, "topic="+topic, "", mpBatch(t, recs)); a.code != 400 || a.index() != 2 || !strings.Contains(a.Error, "compacted") {
		t.Errorf("/batch with record 2 keyless: %v, want 400 index 2 naming it compacted", a)
	}
	_, err := g.produce(t, nil, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", "g0"), grec("", "", "g1")}})
	if r := refusalOf(err); r.detail == nil || r.detail.Status != 400 || r.detail.BadIndex != 1 || !strings.Contains(r.msg, "compacted") {
		t.Errorf("gRPC with record 1 keyless: %v, want InvalidArgument, status 400, bad_index 1, naming it compacted", r)
	}
	kafka := byValue(t, c, topic)
	if len(kafka) != 1 {
		t.Errorf("%d records in Kafka, want only the keyed /commit one", len(kafka))
	}

	setTopicConfig(t, c, topic, "cleanup.policy", "delete")
	time.Sleep(400 * time.Millisecond) // what kproxy read is older than the recheck interval
	if a := p.post(t, "topic="+topic, unique(t, "keyless after delete")); a.code != 200 {
		t.Errorf("/commit without a key once the topic is cleanup.policy delete: %d %q, want 200", a.code, a.body)
	}
	if a := p.postBatch(t, "topic="+topic, "", mpBatch(t, recs)); a.code != 200 {
		t.Errorf("/batch with a keyless record once the topic is cleanup.policy delete: %v, want 200", a)
	}
}

// TestTopicMadeCompactedReadAgain: a topic kproxy read as not compacted is
// made compacted. Its next keyless record reaches a broker, which refuses
// its batch (INVALID_RECORD): 503, perhaps another record's. kproxy reads
// the topic's configuration again, and refuses the next keyless record
// itself (400) rather than sending it.
func TestTopicMadeCompactedReadAgain(t *testing.T) {
	kproxy.SetCompactedRecheck(t, 200*time.Millisecond)
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	decode(t, p.post(t, "topic="+topic, unique(t, "keyless while delete")))
	setTopicConfig(t, c, topic, "cleanup.policy", "compact")
	time.Sleep(300 * time.Millisecond)
	var refused atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		refused.Add(1) // as a broker does: kfake takes keyless records on compacted topics
		return kafkatest.ProduceError(req.(*kmsg.ProduceRequest), kerr.InvalidRecord.Code), nil, true
	})
	if a := p.post(t, "topic="+topic, unique(t, "keyless to compacted")); a.code != 503 {
		t.Errorf("a keyless record the broker refused: %d %q, want 503 (the refusal may be another record's)", a.code, a.body)
	}
	if a := p.post(t, "topic="+topic, unique(t, "next keyless")); a.code != 400 || !strings.Contains(a.body, "compacted") {
		t.Errorf("the next keyless record: %d %q, want 400 naming the topic compacted", a.code, a.body)
	}
	if n := refused.Load(); n != 1 {
		t.Errorf("%d produce requests reached the broker, want 1: the second keyless record must not be sent", n)
	}
}

// TestTopicSwitchedToDeleteTakesKeylessWithinASecond: a 400 tells a client
// its record is bad and is not to be sent again. Once a compacted topic is
// switched to cleanup.policy delete, its keyless records must be taken
// again within about a second (as long as a broker takes to apply such a
// change), not answered 400 — and dropped by their clients — for as long
// as kproxy keeps what it read.
func TestTopicSwitchedToDeleteTakesKeylessWithinASecond(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	setTopicConfig(t, c, topic, "cleanup.policy", "compact")
	p := startProxy(t, c, nil)
	if a := p.post(t, "topic="+topic, unique(t, "keyless to compacted")); a.code != 400 {
		t.Fatalf("a keyless record to the compacted topic: %d %q, want 400", a.code, a.body)
	}
	setTopicConfig(t, c, topic, "cleanup.policy", "delete")
	time.Sleep(1200 * time.Millisecond)
	if a := p.post(t, "topic="+topic, unique(t, "keyless after delete")); a.code != 200 {
		t.Errorf("a keyless record 1.2 s after the topic was switched to cleanup.policy delete: %d %q, want 200", a.code, a.body)
	}
}

// TestCompactedRecheckAskedOnce: keyless records arriving together for a
// compacted topic whose configuration is due to be read again share one
// reading: a client sending them in a loop must not have every request
// ask the brokers.
func TestCompactedRecheckAskedOnce(t *testing.T) {
	kproxy.SetCompactedRecheck(t, 300*time.Millisecond)
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	setTopicConfig(t, c, topic, "cleanup.policy", "compact")
	p := startProxy(t, c, nil)
	if a := p.post(t, "topic="+topic, unique(t, "keyless to compacted")); a.code != 400 {
		t.Fatalf("a keyless record to the compacted topic: %d %q, want 400", a.code, a.body)
	}
	var asked atomic.Int32
	c.ControlKey(int16(kmsg.DescribeConfigs), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		asked.Add(1)
		c.SleepControl(func() { time.Sleep(200 * time.Millisecond) }) // all of them arrive meanwhile
		return nil, nil, false
	})
	time.Sleep(400 * time.Millisecond) // what kproxy read is due to be read again
	const n = 32
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { codes[i] = p.post(t, "topic="+topic, unique(t, fmt.Sprint("keyless ", i))).code })
	}
	wg.Wait()
	for i, code := range codes {
		if code != 400 {
			t.Errorf("keyless record %d: %d, want 400", i, code)
		}
	}
	if got := asked.Load(); got != 1 {
		t.Errorf("%d keyless records arriving together made kproxy read the topic's configuration %d times, want 1", n, got)
	}
}

// TestBatchKeylessCompactedReasonNamesTheRecordOnce: a /batch refused for
// a keyless record to a compacted topic says which record once: "record
// 1: …", not "record 1: record 1: …" (the refusal adds the prefix
// itself). gRPC shares the check.
func TestBatchKeylessCompactedReasonNamesTheRecordOnce(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	setTopicConfig(t, c, topic, "cleanup.policy", "compact")
	p := startProxy(t, c, nil)
	a := p.postBatch(t, "topic="+topic, "", mpBatch(t, []brec{{key: "a", value: mp(t, 0)}, {noKey: true, value: mp(t, 1)}}))
	if a.code != 400 || a.index() != 1 {
		t.Fatalf("keyless record 1 to a compacted topic: %v, want 400 index 1", a)
	}
	if n := strings.Count(a.Error, "record 1:"); n != 1 {
		t.Errorf("reason %q names the record %d times, want once", a.Error, n)
	}
}
