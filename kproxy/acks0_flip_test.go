package kproxy_test

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestAcks0BehindAFlipDelivered attacks DESIGN's acks=0 promise ("delivered
// with the same retries as acks=1 until produce_timeout_ms … Loss only if
// kproxy dies or Kafka stays away") where the spool meets it. acks=0
// records are never spooled. They went to the acks=1 client with their own
// deadline, beside the spoolable acks=1 records of their topic, which go
// with their gate's generation. When the partition's leader refuses every
// produce for longer than spool_after_ms, the topic flips to the spool: the
// generation is cancelled, and kgo, seeing the context of the record
// heading the partition's queue done, fails every record queued in that
// partition — the acks=0 records answered 200 behind it too, with
// produce_timeout_ms left. Kafka comes back well within that: the acks=0
// records, from /commit and from /batch, must all be in Kafka, and none
// counted lost. They were failed and counted in
// kproxy_acks0_lost_records_total, never written; with the spool acks=0
// records now have a client of their own.
func TestAcks0BehindAFlipDelivered(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, nil) // spool_after_ms 200, produce_timeout_ms 3000
	warmUp(t, p, "topic="+topic+"&acks=1&key=w", mp(t, "w"))

	f := kafkatest.NewFaults(t, c)
	end := f.Outage(kerr.NotLeaderForPartition.Code)
	spooled := p.postAsync("topic="+topic+"&acks=1&key=a", mp(t, "a")) // a spoolable record, heading the partition's queue
	// Its produce request refused once: its batch is out of reach for
	// later records, which queue behind it.
	waitFor(t, "the acks=1 record's produce refused", func() bool { return f.Injected() > 0 })
	want := map[string]bool{}
	for i := range 4 {
		v := "c" + strconv.Itoa(i)
		if a := p.post(t, "topic="+topic+"&acks=0&key=k"+strconv.Itoa(i), mp(t, v)); a.code != 200 {
			t.Fatalf("/commit acks=0: %d %s", a.code, a.body)
		}
		want[v] = true
	}
	var recs []brec
	for i := range 3 {
		v := "b" + strconv.Itoa(i)
		recs = append(recs, brec{key: "k" + strconv.Itoa(i), value: mp(t, v)})
		want[v] = true
	}
	if a := p.postBatch(t, "topic="+topic+"&acks=0", "", mpBatch(t, recs)); a.code != 200 {
		t.Fatalf("/batch acks=0: %d %s", a.code, a.raw)
	}
	if code := <-spooled; code != 202 {
		t.Fatalf("the acks=1 record behind a refusing leader: %d, want 202 (spooled at spool_after_ms)", code)
	}
	end() // Kafka is back, long before the acks=0 records' produce_timeout_ms

	count := func(name string) int {
		v, _ := strconv.Atoi(p.metric(t, name)) // absent: 0
		return v
	}
	waitFor(t, "every acks=0 record written or given up", func() bool {
		return count(`kproxy_records_total{acks="0"}`)+count("kproxy_acks0_lost_records_total") >= len(want)
	})
	if n := count("kproxy_acks0_lost_records_total"); n != 0 {
		t.Errorf("kproxy_acks0_lost_records_total %d: acks=0 records answered 200 were given up while Kafka came back within their produce_timeout_ms", n)
	}
	waitFor(t, "the spooled record drained", func() bool { return count("kproxy_spool_drained_total") >= 1 })
	got := map[string]bool{}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		var s string
		if err := msgpack.Unmarshal(r.Value, &s); err == nil {
			got[s] = true
		}
	}
	for v := range want {
		if !got[v] {
			t.Errorf("acks=0 record %q answered 200 and not in Kafka", v)
		}
	}
	if !got["a"] {
		t.Errorf("the spooled record is not in Kafka")
	}
}

// TestSpool0BehindAFlipHasItsReason: a spool=0 record queued in Kafka's
// client behind a record its topic's flip takes into the spool is failed
// with it (kgo fails a partition's queued records when the first one's
// context ends, and the flip cancels it). Answered 503 (not written), its
// reason says what happened: it said "kafka did not take the record
// within produce_timeout_ms", which had not passed (3 s; the answer came
// after spool_after_ms, 200 ms). When the flip cancels a produce request
// that is out (the first record's, refused and retried at once), the
// client counts it as lost and the record behind is answered 504 "may
// have been written" instead, which is honest too: the scenario is run
// again then, up to 10 times, until a 503 comes.
func TestSpool0BehindAFlipHasItsReason(t *testing.T) {
	for attempt := 1; ; attempt++ {
		a := spool0BehindAFlip(t)
		if a.code == 504 && strings.Contains(a.body, "may have been written") && attempt < 10 {
			t.Logf("attempt %d: %d %q: a request out when the flip came", attempt, a.code, a.body)
			continue
		}
		if a.code != 503 || !strings.Contains(a.body, "spool_after_ms") {
			t.Errorf("spool=0 record failed with the record the flip took (attempt %d): %d %q, want 503 naming spool_after_ms", attempt, a.code, a.body)
		}
		return
	}
}

// spool0BehindAFlip runs TestSpool0BehindAFlipHasItsReason's scenario on
// a cluster and a proxy of its own, and returns the spool=0 record's answer.
func spool0BehindAFlip(t *testing.T) answer {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, nil) // spool_after_ms 200, produce_timeout_ms 3000
	warmUp(t, p, "topic="+topic+"&acks=1&key=w", mp(t, "w"))
	f := kafkatest.NewFaults(t, c)
	end := f.Outage(kerr.NotLeaderForPartition.Code)
	defer end()
	spooled := p.postAsync("topic="+topic+"&acks=1&key=a", mp(t, "a"))
	waitFor(t, "the acks=1 record's produce refused", func() bool { return f.Injected() > 0 })
	a := p.post(t, "topic="+topic+"&acks=1&spool=0&key=b", mp(t, "b"))
	if code := <-spooled; code != 202 {
		t.Fatalf("the acks=1 record behind a refusing leader: %d, want 202", code)
	}
	return a
}

// postAsync posts body to /commit?query beside the test, and sends the
// status on the returned channel (0: no answer).
func (p *proxy) postAsync(query string, body []byte) <-chan int {
	code := make(chan int, 1)
	go func() {
		resp, err := http.Post(p.url+"/commit?"+query, "application/msgpack", bytes.NewReader(body))
		if err != nil {
			code <- 0
			return
		}
		resp.Body.Close()
		code <- resp.StatusCode
	}()
	return code
}

// TestGRPCStreamAcks0ThenAcks1SpoolsInTime: with the spool, a stream's
// acks=0 records go through a Kafka client of their own. A stream waits
// between requests that go through two clients (for order) until Kafka's
// client holds none of the earlier one's records; between acks=0 and
// acks=1 it must not: during an outage the acks=0 record stays in its
// client until its produce_timeout_ms (3 s), and the acks=1 request behind
// it, waiting for that, was answered 503 at its own deadline rather than
// spooled (202) at spool_after_ms (200 ms). Once Kafka is back both are
// written.
func TestGRPCStreamAcks0ThenAcks1SpoolsInTime(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := spoolGRPC(t, c, nil) // spool_after_ms 200, produce_timeout_ms 3000
	end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code)
	defer end()
	s := g.stream(t, nil)
	resps, took := sendEach(t, s, []*kproxypb.ProduceRequest{
		{Id: 0, Topic: topic, Acks: acksOf(0), Records: []*kproxypb.Record{grec("", "k", "zero")}},
		{Id: 1, Topic: topic, Acks: acksOf(1), Records: []*kproxypb.Record{grec("", "k", "one")}},
	})
	s.CloseSend()
	if resps[0].Status != 200 {
		t.Fatalf("acks=0 request: %d %q, want 200 at once", resps[0].Status, resps[0].Error)
	}
	// 2 s: spool_after_ms and room for a loaded machine, under the acks=0
	// record's produce_timeout_ms (3 s) that a wait for it would take.
	if resps[1].Status != 202 || took[1] > 2*time.Second {
		t.Errorf("acks=1 request behind an acks=0 one, Kafka away: %d %q after %v, want 202 within spool_after_ms and a margin",
			resps[1].Status, resps[1].Error, took[1].Round(time.Millisecond))
	}
	end()
	waitFor(t, "both records in Kafka", func() bool {
		var values []string
		for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
			values = append(values, string(r.Value))
		}
		return slices.Contains(values, "zero") && slices.Contains(values, "one")
	})
}
