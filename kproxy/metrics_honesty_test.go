package kproxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The tests in this file attack the metrics' promise (README, Metrics):
// each counts what its HELP and the README say it counts.

// TestBatchUnknownTopicCountedAsProduceError: a record refused because
// Kafka does not know its topic (auto_create_topics false) is counted in
// kproxy_produce_errors_total{code="404"}, whether it came alone to
// /commit or in a /batch, which refuses the whole batch: each of its
// records is one Kafka did not take.
func TestBatchUnknownTopicCountedAsProduceError(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.AutoCreateTopics = false })
	const metric = `kproxy_produce_errors_total{code="404"}`

	if a := p.post(t, "topic=no_such_topic", []byte{0x01}); a.code != 404 {
		t.Fatalf("/commit to an unknown topic: %d %q, want 404", a.code, a.body)
	}
	if n := p.metric(t, metric); n != "1" {
		t.Fatalf("after a /commit answered 404: %s %s, want 1", metric, n)
	}

	v := mp(t, "v")
	recs := []brec{{key: "a", value: v}, {topic: "no_such_topic", key: "b", value: v}, {key: "c", value: v}}
	if a := p.postBatch(t, "topic="+topic, "", mpBatch(t, recs)); a.code != 404 || a.index() != 1 {
		t.Fatalf("/batch naming an unknown topic: %v, want 404 at index 1", a)
	}
	if n := p.metric(t, metric); n != "4" {
		t.Errorf("after a /batch of 3 records refused 404: %s %s, want 4 (1 + the batch's 3 records, none written)", metric, n)
	}
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records of the refused batch written", n)
	}
}

// TestAcks0WrittenCountedUnconfirmed: kproxy_acks0_lost_records_total
// counts every acks=0 record "finally refused" (DESIGN), given up without
// Kafka's acknowledgement. A record whose every produce request the
// broker appended, the answer then lost (the connection closed), is in
// Kafka when kgo gives it up at produce_timeout_ms: counted lost, it is
// counted in kproxy_acks0_unconfirmed_records_total too, the part of the
// lost records that may have been written; each record once in each.
func TestAcks0WrittenCountedUnconfirmed(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 1000 })
	kafkatest.NewFaults(t, c).AppendThen(1<<20, 0) // appended, then the connection closed
	const n = 3
	var bodies []string
	for i := range n {
		body := unique(t, "acks0-"+strconv.Itoa(i))
		bodies = append(bodies, string(body))
		if a := p.post(t, "topic="+topic+"&acks=0&key=k"+strconv.Itoa(i), body); a.code != 200 {
			t.Fatalf("acks=0: %d %q", a.code, a.body)
		}
	}
	count := func(name string) int {
		v, _ := strconv.Atoi(p.metric(t, name)) // absent: 0
		return v
	}
	lost := func() int { return count("kproxy_acks0_lost_records_total") }
	unconfirmed := func() int { return count("kproxy_acks0_unconfirmed_records_total") }
	waitFor(t, "the acks=0 records given up", func() bool { return lost() >= n })
	kafka := inKafka(t, c)
	written := 0
	for _, b := range bodies {
		if kafka[b] > 0 {
			written++
		}
	}
	if written == 0 {
		t.Fatalf("no record in Kafka: the fault did not append them")
	}
	// A record given up is counted lost, then unconfirmed (acks0Done):
	// the last one's second count may come after the first was seen.
	if u := settled(unconfirmed, func(u int) bool { return u >= written }); u < written || u > n {
		t.Errorf("kproxy_acks0_unconfirmed_records_total %d, but %d of the %d records given up are in Kafka: written records not counted as may be written", u, written, n)
	}
	if l := lost(); l != n {
		t.Errorf("kproxy_acks0_lost_records_total %d, want the %d records given up, each counted once", l, n)
	}
}

// TestRequestBodiesCountsWhatItsHelpSays: kproxy_request_bodies_total
// said "/commit request bodies read, valid or not", but a body read and
// refused for the request's line or headers (a topic not allowed) is not
// counted, nor is one refused before it is sent (Expect: 100-continue);
// only a body kproxy checks is. Its HELP and the README say so; a
// request refused for its head is counted alike with or without Expect.
func TestRequestBodiesCountsWhatItsHelpSays(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.AutoCreateTopics = false
		cfg.TopicsAllowed = []string{topic, "no_such_topic"}
	})
	const metric = `kproxy_request_bodies_total{format="msgpack"}`
	addr := strings.TrimPrefix(p.url, "http://")
	value := []byte{0x01}
	// expect sends a /commit?query with "Expect: 100-continue" and the
	// body only after a 100; it returns the final status.
	expect := func(query string) int {
		t.Helper()
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(conn, "POST /commit?"+query+" HTTP/1.1\r\nHost: kproxy\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: no answer: %v", query, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 100 {
			return resp.StatusCode
		}
		conn.Write(value)
		if resp, err = http.ReadResponse(br, nil); err != nil {
			t.Fatalf("%s, after the body: %v", query, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name   string
		code   int
		counts int // bodies counted by the request
		send   func() int
	}{
		{"topic not allowed, body sent", 403, 0, func() int { return p.post(t, "topic=secret", value).code }},
		{"topic not allowed, Expect", 403, 0, func() int { return expect("topic=secret") }},
		{"bad acks, body sent", 400, 0, func() int { return p.post(t, "topic="+topic+"&acks=5", value).code }},
		{"unknown topic, body sent", 404, 1, func() int { return p.post(t, "topic=no_such_topic", value).code }},
		{"unknown topic, Expect", 404, 0, func() int { return expect("topic=no_such_topic") }},
		{"written, body sent", 200, 1, func() int { return p.post(t, "topic="+topic, value).code }},
		{"written, Expect", 200, 1, func() int { return expect("topic=" + topic) }},
	} {
		before, _ := strconv.Atoi(p.metric(t, metric))
		if code := tc.send(); code != tc.code {
			t.Fatalf("%s: %d, want %d", tc.name, code, tc.code)
		}
		if after, _ := strconv.Atoi(p.metric(t, metric)); after-before != tc.counts {
			t.Errorf("%s: %s counted %d, want %d", tc.name, metric, after-before, tc.counts)
		}
	}
	help := metricHelp(p.metrics(t), "kproxy_request_bodies_total")
	// What it counts: the bodies checked; what it leaves out: requests
	// refused for their line or headers, which kproxy_requests_total counts.
	if !strings.Contains(help, "checked") || !strings.Contains(help, "refused for its line or headers") {
		t.Errorf("HELP of kproxy_request_bodies_total %q does not say it counts the bodies checked, not those of requests refused for their line or headers", help)
	}
}

// TestBatchRefusedForAcks0OverloadNotCountedAsTried: a /batch at acks=0
// refused whole because req_pool_size acks=0 records are still being
// delivered is kproxy's own refusal, none of its records handed to
// Kafka, as a batch over req_pool_size in flight is (admitBatch). It was
// counted in kproxy_batch_results_total ("records of /batch requests
// written or tried", each also in kproxy_records_total or
// kproxy_produce_errors_total), and in neither of those.
func TestBatchRefusedForAcks0OverloadNotCountedAsTried(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ReqPoolSize = 2 })
	release := make(chan struct{})
	defer close(release)
	var held atomic.Int32
	holdProduce(c, release, &held)
	v := mp(t, "v")
	if a := p.postBatch(t, "topic="+topic+"&acks=0", "", mpBatch(t, []brec{{key: "a", value: v}, {key: "a", value: v}})); a.code != 200 {
		t.Fatalf("2 acks=0 records, req_pool_size 2: %v", a)
	}
	waitFor(t, "the acks=0 records held at the broker", func() bool { return held.Load() > 0 })
	a := p.postBatch(t, "topic="+topic+"&acks=0", "", mpBatch(t, []brec{{key: "b", value: v}}))
	if a.code != 503 || !strings.Contains(a.Error, "acks=0") {
		t.Fatalf("one more acks=0 record: %v, want 503 for the acks=0 records being delivered", a)
	}
	results := p.metric(t, `kproxy_batch_results_total{code="503"}`)
	errors := p.metric(t, `kproxy_produce_errors_total{code="503"}`)
	if results != errors && !(results == "0" && errors == "absent") {
		t.Errorf(`kproxy_batch_results_total{code="503"} %s, kproxy_produce_errors_total{code="503"} %s: a record of a batch counted as tried and not written, but not as a produce error`, results, errors)
	}
	if results != "0" {
		t.Errorf(`kproxy_batch_results_total{code="503"} %s for a batch refused whole before Kafka, want 0 as for one over req_pool_size`, results)
	}
}

// TestSpoolZeroRefusalCountedAlike: a spool=0 record of a topic that has
// records in the spool is refused 503 (it would overtake them), in
// /commit as in /batch; /batch counted it in
// kproxy_produce_errors_total{code="503"} and /commit did not.
func TestSpoolZeroRefusalCountedAlike(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, nil)
	end := kafkatest.NewFaults(t, c).Outage(int16(kerr.NotLeaderForPartition.Code))
	defer end()
	if a := p.post(t, "topic="+topic+"&key=a", unique(t, "spooled")); a.code != 202 {
		t.Fatalf("record during an outage: %d %q, want 202", a.code, a.body)
	}
	const metric = `kproxy_produce_errors_total{code="503"}`
	errs := func() int {
		n, _ := strconv.Atoi(p.metric(t, metric)) // absent: 0
		return n
	}
	before := errs()
	if a := p.post(t, "topic="+topic+"&key=a&spool=0", unique(t, "zero")); a.code != 503 || !strings.Contains(a.body, "spool") {
		t.Fatalf("/commit spool=0 while the topic spools: %d %q, want 503", a.code, a.body)
	}
	commit := errs() - before
	before = errs()
	if a := p.postBatch(t, "topic="+topic+"&acks=1&spool=0", "", mpBatch(t, []brec{{key: "a", value: mp(t, "zero-b")}})); a.code != 503 {
		t.Fatalf("/batch spool=0 while the topic spools: %v, want 503", a)
	}
	batch := errs() - before
	if commit != 1 || batch != 1 {
		t.Errorf("%s counted %d for the /commit record refused and %d for the /batch one, want 1 each", metric, commit, batch)
	}
}

// TestBatchRefusedUnreadCountedInBatches: kproxy_batches_total counts
// "/batch requests answered, by status (also counted in
// kproxy_requests_total)". A /batch whose body is over
// max_request_size_bytes is answered 413 before it is read (with
// "Expect: 100-continue" or without); kproxy_requests_total counted it,
// kproxy_batches_total did not.
func TestBatchRefusedUnreadCountedInBatches(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.MaxRequestSizeBytes = 1024 })
	addr := strings.TrimPrefix(p.url, "http://")
	for _, expect := range []string{"", "Expect: 100-continue\r\n"} {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "POST /batch?topic="+topic+" HTTP/1.1\r\nHost: kproxy\r\n"+expect+"Content-Length: 2048\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("/batch over max_request_size_bytes (%q): no answer: %v", expect, err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("/batch over max_request_size_bytes (%q): %d, want 413", expect, resp.StatusCode)
		}
	}
	requests := p.metric(t, `kproxy_requests_total{code="413"}`)
	batches := p.metric(t, `kproxy_batches_total{code="413"}`)
	if requests != "2" || batches != "2" {
		t.Errorf(`two /batch requests answered 413: kproxy_requests_total{code="413"} %s, kproxy_batches_total{code="413"} %s, want 2 and 2`, requests, batches)
	}
}

// TestRecordsTotalSaysSpooledRecordsAreApart: kproxy_records_total's HELP
// was "Records Kafka accepted, by acks level", but a record answered 202
// (spooled) and drained into Kafka afterwards is not in it (it is in
// kproxy_spool_drained_total): an operator comparing it with the topic's
// records would find records Kafka accepted that it does not count. Its
// HELP says what it counts.
func TestRecordsTotalSaysSpooledRecordsAreApart(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, nil)
	end := kafkatest.NewFaults(t, c).Outage(int16(kerr.NotLeaderForPartition.Code))
	if a := p.post(t, "topic="+topic+"&key=a", unique(t, "spooled")); a.code != 202 {
		end()
		t.Fatalf("record during an outage: %d %q, want 202", a.code, a.body)
	}
	end()
	spoolEmpty(t, p)
	if n := endOffsets(t, c, topic); n != 1 {
		t.Fatalf("%d records in Kafka, want the spooled one", n)
	}
	// The drain acknowledges a record in the spool (which empties it),
	// then counts it drained (ackDrained): the count may come after.
	d := settled(func() string { return p.metric(t, "kproxy_spool_drained_total") }, func(d string) bool { return d == "1" })
	if r := p.metric(t, `kproxy_records_total{acks="1"}`); d != "1" || r != "0" {
		t.Fatalf("kproxy_spool_drained_total %s, kproxy_records_total{acks=\"1\"} %s, want 1 and 0", d, r)
	}
	help := metricHelp(p.metrics(t), "kproxy_records_total")
	if !strings.Contains(help, "spool") {
		t.Errorf("HELP of kproxy_records_total %q does not say that records Kafka accepted from the spool are not in it", help)
	}
}

// metricHelp returns the HELP text of metric name in the exposition text
// metrics, "" when it has none.
func metricHelp(metrics, name string) string {
	help := ""
	for _, line := range strings.Split(metrics, "\n") {
		if h, ok := strings.CutPrefix(line, "# HELP "+name+" "); ok {
			help = h
		}
	}
	return help
}
