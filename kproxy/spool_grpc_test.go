package kproxy_test

import (
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc/codes"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The tests in this file attack the spool's promises over gRPC (README
// "Spool"): Produce and ProduceStream spool during an outage (OK, status
// 202, spooled results), spool = false is never spooled, atomic requests
// never overtake spooled records, and every spooled record reaches Kafka.

// spoolGRPC is spoolProxy serving gRPC too.
func spoolGRPC(t *testing.T, c *kfake.Cluster, edit func(*kproxy.Config)) *gproxy {
	t.Helper()
	dir := t.TempDir()
	return startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.SpoolDir = dir
		cfg.SpoolAfterMs = 200
		cfg.ProduceTimeoutMs = 3000
		if edit != nil {
			edit(cfg)
		}
	})
}

// refuseUnlessTransactional answers every produce request that is not a
// transaction's with NOT_LEADER_OR_FOLLOWER, until end: an outage for
// kproxy's live clients and the spool's drain, while atomic batches (their
// transactional clients) are written.
func refuseUnlessTransactional(c *kfake.Cluster) (end func()) {
	var over atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if over.Load() {
			return nil, nil, false
		}
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if pr.TransactionID != nil || pr.Acks == 0 {
			return nil, nil, false
		}
		return kafkatest.ProduceError(pr, kerr.NotLeaderForPartition.Code), nil, true
	})
	return func() { over.Store(true) }
}

// TestSpoolAtomicNeverOvertakes: while a topic has records in the spool, an
// atomic batch for it (written by a transactional client of its own, which
// Kafka takes) is refused with 503 — over HTTP and gRPC (Unavailable) —
// instead of reaching Kafka before them; once the spool has drained it is
// written, after the spooled records.
func TestSpoolAtomicNeverOvertakes(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}, {Name: "other", Partitions: 1}})
	g := spoolGRPC(t, c, func(cfg *kproxy.Config) { cfg.TransactionalProducers = 1 })
	end := refuseUnlessTransactional(c)
	t.Cleanup(end)

	if a := g.post(t, "topic="+topic+"&key=a", unique(t, "spooled-1")); a.code != 202 {
		t.Fatalf("record during the outage: %d %q", a.code, a.body)
	}
	want := "topic " + topic + " has records in the spool; an atomic batch would overtake them"
	// The batch's first record is for a topic that does not spool: the
	// second one's topic is named, and its index given.
	code, ab := postBatch(t, g.proxy, "acks=-1&atomic=1", []map[string]any{
		{"topic": "other", "key": "a", "value": "atomic-other"},
		{"topic": topic, "key": "a", "value": "atomic-1"},
	})
	if code != 503 || !strings.Contains(ab.Error, want) || len(ab.Results) != 2 || ab.Results[0].Status != 503 {
		t.Errorf("atomic batch while its topic spools: %d %+v, want 503 %q", code, ab, want)
	}
	_, err := g.produce(t, nil, &kproxypb.ProduceRequest{Acks: acksOf(-1), Atomic: true, Topic: topic,
		Records: []*kproxypb.Record{grec("", "a", "atomic-grpc")}})
	if r := refusalOf(err); r.code != codes.Unavailable || !strings.Contains(r.msg, want) || r.detail == nil || r.detail.Status != 503 {
		t.Errorf("atomic Produce while its topic spools: %v, want Unavailable %q", r, want)
	}

	clientsAnswered(t, g.proxy)
	end()
	spoolEmpty(t, g.proxy)
	code, ab = postBatch(t, g.proxy, "acks=-1&atomic=1", []map[string]any{{"topic": topic, "key": "a", "value": "atomic-2"}})
	if code != 200 {
		t.Fatalf("atomic batch after the drain: %d %+v", code, ab)
	}
	var order []string
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		order = append(order, string(r.Value))
	}
	if len(order) != 2 || order[0] != string(unique(t, "spooled-1")) || order[1] != `"atomic-2"` {
		t.Errorf("topic holds %q, want the spooled record then atomic-2 only", order)
	}
	if got := byValue(t, c, "other"); len(got) != 0 {
		t.Errorf("the refused atomic batch's record for other is in kafka: %v", got)
	}
}

// TestSpoolGRPC: during an outage a unary Produce and the requests of a
// ProduceStream are answered OK with status 202, every result spooled;
// spool = false is refused Unavailable (503) while the topic spools, alone
// and inside a stream; when Kafka is back every spooled record is in
// Kafka once, per key in the order sent.
func TestSpoolGRPC(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	g := spoolGRPC(t, c, nil)
	f := kafkatest.NewFaults(t, c)
	end := f.Outage(kerr.NotLeaderForPartition.Code)

	spooled := func(what string, resp *kproxypb.ProduceResponse, n int) {
		t.Helper()
		if resp.Status != 202 || len(resp.Results) != n {
			t.Fatalf("%s: status %d, %d results; want 202 and %d", what, resp.Status, len(resp.Results), n)
		}
		for i, r := range resp.Results {
			if !r.Spooled || r.Status != 202 || r.Error != "" {
				t.Errorf("%s: result %d %v, want spooled 202", what, i, r)
			}
		}
	}
	const keys = 4
	reqs := keyedRequests(6, 10, keys, func(int) int32 { return -1 })
	resp, err := g.produce(t, nil, reqs[0])
	if err != nil {
		t.Fatalf("Produce during the outage: %v", refusalOf(err))
	}
	spooled("Produce", resp, 10)

	no := false
	_, err = g.produce(t, nil, &kproxypb.ProduceRequest{Acks: acksOf(-1), Topic: topic, Spool: &no,
		Records: []*kproxypb.Record{grec("", "k0", "zero-unary")}})
	if r := refusalOf(err); r.code != codes.Unavailable || r.detail == nil || r.detail.Status != 503 || !strings.Contains(r.msg, "spool") {
		t.Errorf("Produce with spool = false while the topic spools: %v, want Unavailable 503", r)
	}

	// A stream: the requests left, then one with spool = false between them.
	s := g.stream(t, nil)
	zero := &kproxypb.ProduceRequest{Id: 100, Acks: acksOf(-1), Topic: topic, Spool: &no,
		Records: []*kproxypb.Record{grec("", "k1", "zero-stream")}}
	sent := sendAll(s, append(append(append([]*kproxypb.ProduceRequest{}, reqs[1:3]...), zero), reqs[3:]...))
	resps, err := recvAll(s)
	if err != nil || <-sent != nil || len(resps) != len(reqs) {
		t.Fatalf("stream: %v after %d answers", err, len(resps))
	}
	for i, resp := range resps {
		switch {
		case i == 2:
			if resp.Id != 100 || resp.Status != 503 || len(resp.Results) != 1 || resp.Results[0].Spooled || resp.Results[0].Status != 503 {
				t.Errorf("stream request with spool = false: %v, want 503 not spooled", resp)
			}
		default:
			q := i + 1
			if i > 2 {
				q = i
			}
			if resp.Id != uint64(q) {
				t.Errorf("stream answer %d has id %d, want %d", i, resp.Id, q)
			}
			spooled("stream request "+strconv.Itoa(q), resp, 10)
		}
	}
	if got := g.metric(t, "kproxy_spooled_total"); got != "60" {
		t.Errorf("kproxy_spooled_total %s, want 60", got)
	}

	clientsAnswered(t, g.proxy)
	end()
	spoolEmpty(t, g.proxy)
	checkKeyOrder(t, c, reqs) // every record once, per key in order; none of the spool = false ones
	// The drain acknowledges records in the spool (which empties it),
	// then counts them drained (ackDrained): the count may come after.
	if got := settled(func() string { return g.metric(t, "kproxy_spool_drained_total") }, func(d string) bool { return d == "60" }); got != "60" {
		t.Errorf("kproxy_spool_drained_total %s, want 60", got)
	}
}

// stallProduce holds the next produce request (acks 1 or -1), and with it
// the one-broker cluster, until release is closed; then it answers that
// request and every later one with code (closes its connection when code
// is 0), writing nothing, until the returned end is called.
func stallProduce(c *kfake.Cluster, release <-chan struct{}, code int16) (end func()) {
	var over, held atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if over.Load() {
			return nil, nil, false
		}
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		if pr.Acks == 0 {
			return nil, nil, false
		}
		if !held.Swap(true) {
			<-release
		}
		if code == 0 {
			return nil, errors.New("fault: connection closed"), true
		}
		return kafkatest.ProduceError(pr, code), nil, true
	})
	return func() { over.Store(true) }
}

// TestSpoolTransitionStreamKeyOrder attacks the moment a topic starts
// spooling with a ProduceStream, whose requests are handed to kgo one after
// the other without waiting for answers: Kafka holds a produce request past
// spool_after_ms (the topic flips) while the stream's next requests keep
// coming, then refuses it (or closes its connection). The records kgo held
// are failed and spooled; the requests that came meanwhile must be spooled
// after them. Per key, the first copies in Kafka are in the order of the
// stream, every record answered 200 or 202 is there, and duplicates are no
// more than kproxy_spool_duplicates_possible_total.
func TestSpoolTransitionStreamKeyOrder(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	g := spoolGRPC(t, c, nil)

	const n, per, keys = 70, 12, 24
	reqs := keyedRequests(n, per, keys, func(int) int32 { return -1 })
	s := g.stream(t, nil)
	sent := make(chan error, 1)
	go func() { // one request every 40 ms, faults at requests 5 and 40
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for q, r := range reqs {
			var code int16 = -1
			switch q {
			case 5:
				code = kerr.NotLeaderForPartition.Code // refused after the hold
			case 40:
				code = 0 // connection closed after the hold: may have been written
			}
			if code >= 0 {
				release := make(chan struct{})
				end := stallProduce(c, release, code)
				time.AfterFunc(time.Second, func() { close(release) })
				time.AfterFunc(1300*time.Millisecond, end)
			}
			if err := s.Send(r); err != nil {
				sent <- err
				return
			}
			<-tick.C
		}
		sent <- s.CloseSend()
	}()
	resps, err := recvAll(s)
	if err != nil || <-sent != nil || len(resps) != n {
		t.Fatalf("stream: %v after %d answers", err, len(resps))
	}
	want := map[string][]int{}
	statuses := map[int32]int{}
	for q, resp := range resps {
		for i, r := range resp.Results {
			statuses[r.Status]++
			if r.Status == 200 || r.Status == 202 {
				k, seq := parseSeq(t, reqs[q].Records[i].Value)
				want[k] = append(want[k], seq)
			}
		}
	}
	spoolEmpty(t, g.proxy)
	t.Logf("record results by status %v", statuses)
	if statuses[202] == 0 {
		t.Fatalf("no record was spooled (results %v): the attack did not happen", statuses)
	}
	dups := checkFirstCopies(t, c, want, func(v []byte) (string, int) { return parseSeq(t, v) })
	possible := metricInt(t, g.proxy, "kproxy_spool_duplicates_possible_total")
	if dups > possible {
		t.Errorf("%d duplicates in kafka, only %d counted as possible", dups, possible)
	}
	t.Logf("duplicates %d (counted possible %d)", dups, possible)
}

// TestSpoolGRPCStreamRequestBehindASlowOneSpoolsInTime: on a stream, a
// request with spool = false to a topic that does not spool waits for its
// deadline (3 s) during an outage; the request after it, to a topic that
// may spool, must be spooled at spool_after_ms (200 ms) as a Produce or a
// /batch is, and answered 202 once the first is answered. Before, the
// stream's answerer waited for the requests in turn, and only its wait
// spooled a request: the second was spooled when its turn came, at its own
// deadline, and answered at random 503, 504 or 202.
func TestSpoolGRPCStreamRequestBehindASlowOneSpoolsInTime(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 3}, {Name: "other", Partitions: 1}})
	g := spoolGRPC(t, c, nil)
	f := kafkatest.NewFaults(t, c)
	end := f.Outage(kerr.NotLeaderForPartition.Code)
	defer end()
	no := false
	slow := &kproxypb.ProduceRequest{Id: 1, Acks: acksOf(-1), Topic: "other", Spool: &no,
		Records: []*kproxypb.Record{grec("", "k", "not spooled")}}
	next := keyedRequests(1, 10, 4, func(int) int32 { return -1 })[0]
	next.Id = 2
	s := g.stream(t, nil)
	sent := sendAll(s, []*kproxypb.ProduceRequest{slow, next})
	start := time.Now()
	waitFor(t, "the second request spooled while the first waits", func() bool {
		if time.Since(start) > 2*time.Second { // the first request waits 3 s
			t.Fatalf("the second request not spooled %v after it was sent (spool_after_ms 200), kproxy_spooled_total %s",
				time.Since(start).Round(time.Millisecond), g.metric(t, "kproxy_spooled_total"))
		}
		return g.metric(t, "kproxy_spooled_total") == "10"
	})
	resps, err := recvAll(s)
	if err != nil || <-sent != nil || len(resps) != 2 {
		t.Fatalf("stream: %v after %d answers", err, len(resps))
	}
	if resps[0].Id != 1 || resps[0].Status == 200 || resps[0].Status == 202 {
		t.Errorf("the spool = false request during the outage: %v, want not written", resps[0])
	}
	if resps[1].Id != 2 || resps[1].Status != 202 || len(resps[1].Results) != 10 {
		t.Fatalf("the request behind it: %v, want 202 with 10 results", resps[1])
	}
	for i, r := range resps[1].Results {
		if !r.Spooled || r.Status != 202 {
			t.Errorf("result %d %v, want spooled 202", i, r)
		}
	}
}
