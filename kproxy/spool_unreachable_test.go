package kproxy_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/grpc/codes"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSpoolStartsWithoutKafka: with spool_dir set, kproxy starts while no
// broker answers (after a crash during an outage), says so on /health, and
// spools the records of topics it never wrote to (their metadata cannot be
// fetched) after spool_after_ms, /commit and /batch; once Kafka is back the
// spool drains in key order, and a topic that does not exist is parked,
// its records counted per topic in kproxy_spool_parked_records.
func TestSpoolStartsWithoutKafka(t *testing.T) {
	k := kafkatest.StartRestartable(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	k.Stop()
	p := spoolProxy(t, nil, func(cfg *kproxy.Config) {
		cfg.BrokerHosts = []string{k.Addr()}
		cfg.Kafka.DialTimeoutMs = 200
	})
	if code, text := health(t, p); code != 200 || !strings.HasPrefix(text, "degraded: spooling, no kafka broker reachable") {
		t.Errorf("/health without kafka: %d %q", code, text)
	}
	want := map[string][]int{}
	for n := range 4 {
		start := time.Now()
		a := p.post(t, "acks=-1&topic="+topic+"&key=a", keySeqValue(t, "a", n))
		if a.code != 202 || !strings.Contains(a.body, `"spooled":true`) {
			t.Fatalf("record a#%d without kafka: %d %q, want 202 spooled", n, a.code, a.body)
		}
		if n == 0 && time.Since(start) < 200*time.Millisecond {
			t.Errorf("the first record was spooled after %v, before spool_after_ms", time.Since(start))
		}
		want["a"] = append(want["a"], n)
	}
	code, ab := postBatch(t, p, "acks=1", []map[string]any{
		{"topic": topic, "key": "b", "value": "b#0"}, {"topic": topic, "key": "b", "value": "b#1"}})
	if code != 202 || len(ab.Results) != 2 || !ab.Results[0].Spooled || !ab.Results[1].Spooled {
		t.Fatalf("batch without kafka: %d %+v", code, ab)
	}
	want["b"] = []int{0, 1}
	if a := p.post(t, "acks=1&topic=no-such-topic&key=x", keySeqValue(t, "x", 0)); a.code != 202 {
		t.Fatalf("record of an unknown topic without kafka: %d %q, want 202", a.code, a.body)
	}
	if a := p.post(t, "acks=1&topic="+topic+"&key=c&spool=0", keySeqValue(t, "c", 0)); a.code != 503 {
		t.Errorf("spool=0 record without kafka: %d %q, want 503", a.code, a.body)
	}

	k.Restart()
	parked := `kproxy_spool_parked_records{topic="no-such-topic"}`
	deadline := time.Now().Add(30 * time.Second)
	for p.metric(t, "kproxy_spool_records") != "1" || p.metric(t, parked) != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("spool not drained but the unknown topic's record: kproxy_spool_records %s, %s %s",
				p.metric(t, "kproxy_spool_records"), parked, p.metric(t, parked))
		}
		time.Sleep(20 * time.Millisecond)
	}
	postDirect(t, p, "acks=-1&topic="+topic+"&key=a", keySeqValue(t, "a", 4))
	want["a"] = append(want["a"], 4)
	if a := p.post(t, "acks=1&topic=other-missing-topic&key=x", keySeqValue(t, "x", 0)); a.code != 404 {
		t.Errorf("record of an unknown topic with kafka back: %d %q, want 404", a.code, a.body)
	}
	dups := checkFirstCopies(t, k.Cluster(), want, func(v []byte) (string, int) {
		if v[0] == '"' { // the batch's JSON strings
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				t.Fatalf("value %q: %v", v, err)
			}
			b, _ := msgpack.Marshal(s)
			v = b
		}
		return parseKeySeq(t, v)
	})
	if dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

// TestSpoolDrainSurvivesReadErrors: the spool's directory is away (renamed)
// when the drain starts, so that opening its segment fails: the drain
// counts the failed reads, retries, and drains every record once the
// directory is back, in order.
func TestSpoolDrainSurvivesReadErrors(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	dir := filepath.Join(t.TempDir(), "spool")
	sp, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]int{}
	var recs []spool.Record
	for n := range 50 {
		key := "k" + strconv.Itoa(n%5)
		recs = append(recs, spool.Record{Topic: topic, Key: []byte(key), Value: keySeqValue(t, key, n/5)})
		want[key] = append(want[key], n/5)
	}
	if _, err := sp.Append(recs); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, c, func(cfg *kproxy.Config) { cfg.SpoolDir = dir })
	if err := os.Rename(dir, dir+"-away"); err != nil {
		t.Fatal(err)
	}
	p := runProxy(t, srv)
	deadline := time.Now().Add(30 * time.Second)
	for n, _ := strconv.Atoi(p.metric(t, "kproxy_spool_read_errors_total")); n < 2; n, _ = strconv.Atoi(p.metric(t, "kproxy_spool_read_errors_total")) {
		if time.Now().After(deadline) {
			t.Fatalf("kproxy_spool_read_errors_total %s, want 2 failed reads", p.metric(t, "kproxy_spool_read_errors_total"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := p.metric(t, "kproxy_spool_records"); got != "50" {
		t.Errorf("kproxy_spool_records %s while the spool cannot be read, want 50", got)
	}
	if err := os.Rename(dir+"-away", dir); err != nil {
		t.Fatal(err)
	}
	spoolEmpty(t, p)
	if dups := checkSpooledOrder(t, c, want); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if got := p.metric(t, "kproxy_spool_replayed_records"); got != "50" {
		t.Errorf("kproxy_spool_replayed_records %s, want 50", got)
	}
}

// TestSpoolBlindTopicFreedByRefusedRequest attacks the statuses of
// spool=0 records (DESIGN "Spool": a client that wants 200-or-error sends
// spool=0; 503 only while the topic has spooled records they would
// overtake). A batch that may spool finds no broker for its topic, which
// marks the topic to spool its next record, and is then refused (413,
// a later record too large) before any record of it reaches the spool.
// Once that batch's deadline has passed and Kafka is back, a spool=0
// record of the topic, with nothing of it spooled, must be written (200),
// not refused 503 "the topic has records in the spool" forever.
func TestSpoolBlindTopicFreedByRefusedRequest(t *testing.T) {
	k := kafkatest.StartRestartable(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	k.Stop()
	p := spoolProxy(t, nil, func(cfg *kproxy.Config) {
		cfg.BrokerHosts = []string{k.Addr()}
		cfg.Kafka.DialTimeoutMs = 200
		cfg.MaxMessageBytes = 2048
		cfg.ProduceTimeoutMs = 2000
	})
	code, ab := postBatch(t, p, "acks=1", []map[string]any{
		{"topic": topic, "key": "a", "value": "small"},
		{"topic": topic, "key": "a", "value": strings.Repeat("x", 4096)}})
	if code != 413 {
		t.Fatalf("batch with a record too large: %d %+v, want 413", code, ab)
	}
	refused := time.Now()
	k.Restart()
	// The batch's deadline (2 s) passed, and Kafka's first writes may
	// take a while on a loaded machine: 30 s.
	deadline := refused.Add(30 * time.Second)
	for {
		a := p.post(t, "acks=1&topic="+topic+"&key=c&spool=0", keySeqValue(t, "c", 0))
		if a.code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spool=0 record %v after the refused batch, Kafka back, kproxy_spool_records %s: %d %q, want 200",
				time.Since(refused).Round(time.Second), p.metric(t, "kproxy_spool_records"), a.code, a.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := metricInt(t, p, "kproxy_spooled_total"); n != 0 {
		t.Errorf("kproxy_spooled_total %d, want 0: nothing was spooled", n)
	}
}

// TestSpoolBatchOfUnknownTopicsWaitsSpoolAfterOnce attacks the spool's
// promise for topics not known yet ("when no broker gives it within
// spool_after_ms ... the record is spooled as named and answered 202") for
// a /batch naming several of them while no broker answers, as after a
// restart during an outage: its topics' look-ups share one spool_after_ms
// from the request's arrival. Waiting spool_after_ms for each topic in
// turn, a batch of 10 topics took 10 x 300 ms, past produce_timeout_ms,
// and 100 topics 100 s: its client gives up and sends it again while the
// first copy is still spooled.
func TestSpoolBatchOfUnknownTopicsWaitsSpoolAfterOnce(t *testing.T) {
	k := kafkatest.StartRestartable(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	k.Stop()
	p := spoolProxy(t, nil, func(cfg *kproxy.Config) {
		cfg.BrokerHosts = []string{k.Addr()}
		cfg.Kafka.DialTimeoutMs = 200
		cfg.SpoolAfterMs = 300
		cfg.ProduceTimeoutMs = 3000
	})
	var recs []map[string]any
	for i := range 10 {
		recs = append(recs, map[string]any{"topic": "new-topic-" + strconv.Itoa(i), "key": "a", "value": "v"})
	}
	start := time.Now()
	code, ab := postBatch(t, p, "acks=1", recs)
	took := time.Since(start)
	t.Logf("batch of 10 unknown topics: %d after %v", code, took)
	if code != 202 {
		t.Fatalf("batch of unknown topics without kafka: %d %+v, want 202", code, ab)
	}
	// spool_after_ms once, and a margin for a loaded machine.
	if took > 1500*time.Millisecond {
		t.Errorf("batch answered after %v; its topics' look-ups share spool_after_ms (300 ms)", took)
	}
}

// TestSpoolUnknownTopicNotWaitedPastDeadline attacks produce_timeout_ms's
// promise with the spool on, for a gRPC call whose deadline (300 ms) ends
// before spool_after_ms (1 s): no broker answers the look-up of its topic,
// which kproxy does not know yet. A record whose deadline ends before
// spool_after_ms is not spooled (README, Spool): the call is answered
// Unavailable (not written) by its deadline, not left waiting for
// spool_after_ms past it.
func TestSpoolUnknownTopicNotWaitedPastDeadline(t *testing.T) {
	k := kafkatest.StartRestartable(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, k.Cluster(), func(cfg *kproxy.Config) {
		cfg.BrokerHosts = []string{k.Addr()}
		cfg.Kafka.DialTimeoutMs = 200
		cfg.SpoolDir = t.TempDir()
		cfg.SpoolAfterMs = 1000
		cfg.ProduceTimeoutMs = 5000
	})
	k.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := g.kp.Produce(ctx, &kproxypb.ProduceRequest{Acks: acksOf(1),
		Records: []*kproxypb.Record{grec("never-looked-up", "k", "v")}})
	r := refusalOf(err)
	t.Logf("short-deadline call naming an unknown topic: %v", r)
	if r.code != codes.Unavailable || r.detail == nil {
		t.Errorf("answered %v; want kproxy's Unavailable (not written) by the call's deadline", r)
	}
	if got := metricInt(t, g.proxy, "kproxy_spool_records"); got != 0 {
		t.Errorf("kproxy_spool_records %d: the record was spooled past its deadline", got)
	}
}

// TestSpoolShortDeadlineSpooledWhenTopicSpools attacks README's "unless its
// topic spools already" for a record whose deadline (a gRPC call's 600 ms)
// ends before spool_after_ms (1 s), of a topic kproxy does not know while
// no broker answers: the topic has records in the spool, replayed at
// start (a restart during an outage), so it spools already, and the
// record is spooled at once, not refused Unavailable at its deadline.
func TestSpoolShortDeadlineSpooledWhenTopicSpools(t *testing.T) {
	dir := t.TempDir()
	sp, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Append([]spool.Record{{Topic: "replayed", Key: []byte("k"), Value: keySeqValue(t, "k", 0)}}); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	// No broker listens at the address kproxy is given.
	g := startGRPC(t, kafkatest.Start(t, nil), func(cfg *kproxy.Config) {
		cfg.BrokerHosts = []string{"127.0.0.1:" + strconv.Itoa(freeTCPPort(t))}
		cfg.Kafka.DialTimeoutMs = 200
		cfg.SpoolDir = dir
		cfg.SpoolAfterMs = 1000
		cfg.ProduceTimeoutMs = 5000
	})
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	resp, err := g.kp.Produce(ctx, &kproxypb.ProduceRequest{Acks: acksOf(1),
		Records: []*kproxypb.Record{grec("replayed", "k", string(keySeqValue(t, "k", 1)))}})
	r := refusalOf(err)
	t.Logf("short-deadline call to a topic with replayed records in the spool: %v %v", r, resp)
	if r.code != codes.OK || len(resp.GetResults()) != 1 || !resp.GetResults()[0].GetSpooled() {
		t.Errorf("answered %v %v; want the record spooled: its topic spools already", r, resp)
	}
}
