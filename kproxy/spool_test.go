package kproxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The tests in this file attack the spool's promises (DESIGN.md "Spool"):
// a 202 record reaches Kafka, once when Kafka refused it outright, in
// per-key order, also across the moment a topic starts spooling; a full
// spool refuses with 503 and loses nothing it took; spool=0 and atomic
// batches are never spooled.

// spoolProxy is a kproxy with a spool in a temporary directory.
func spoolProxy(t *testing.T, c *kfake.Cluster, edit func(*kproxy.Config)) *proxy {
	t.Helper()
	return runProxy(t, spoolServer(t, c, edit))
}

// spoolServer is spoolProxy's server, not running yet.
func spoolServer(t *testing.T, c *kfake.Cluster, edit func(*kproxy.Config)) *kproxy.Server {
	t.Helper()
	dir := t.TempDir()
	return newServer(t, c, func(cfg *kproxy.Config) {
		cfg.SpoolDir = dir
		cfg.SpoolAfterMs = 200
		cfg.ProduceTimeoutMs = 3000
		if edit != nil {
			edit(cfg)
		}
	})
}

// warmUp writes a record before a test's fault starts (the topic looked
// up, a producer ID taken, a first answer), with spool=0: the first record
// of a fresh proxy can take longer than a test's spool_after_ms on a
// loaded machine, and spooled it would be written by the drain, out of
// the test's plan. A 503 (not written) is sent again, for 20 s at most.
func warmUp(t *testing.T, p *proxy, query string, value []byte) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		a := p.post(t, query+"&spool=0", value)
		switch {
		case a.code == 200:
			return
		case a.code != 503 || time.Now().After(deadline):
			t.Fatalf("warm-up record (%s): %d %s", query, a.code, a.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// keySeqValue is the value of a key's n-th record.
func keySeqValue(t testing.TB, key string, n int) []byte {
	t.Helper()
	return unique(t, key+"#"+strconv.Itoa(n))
}

// parseKeySeq reads back keySeqValue.
func parseKeySeq(t testing.TB, v []byte) (string, int) {
	t.Helper()
	var s string
	if err := msgpack.Unmarshal(v, &s); err != nil {
		t.Fatalf("value %q: %v", v, err)
	}
	key, n, _ := strings.Cut(s, "#")
	i, err := strconv.Atoi(n)
	if err != nil {
		t.Fatalf("value %q", s)
	}
	return key, i
}

// checkSpooledOrder reads topic back and checks, per key, that records first
// appear in the order of their sequence numbers, and that every sequence
// number in want (key → accepted numbers) is there. It returns the number
// of duplicates.
func checkSpooledOrder(t *testing.T, c *kfake.Cluster, want map[string][]int) (dups int) {
	t.Helper()
	return checkFirstCopies(t, c, want, func(v []byte) (string, int) { return parseKeySeq(t, v) })
}

// checkFirstCopies is checkSpooledOrder for values read by parse (key and
// sequence number).
func checkFirstCopies(t *testing.T, c *kfake.Cluster, want map[string][]int, parse func([]byte) (string, int)) (dups int) {
	t.Helper()
	for _, n := range checkFirstCopiesByKey(t, c, want, parse) {
		dups += n
	}
	return dups
}

// checkFirstCopiesByKey is checkFirstCopies with the duplicates counted
// per key.
func checkFirstCopiesByKey(t *testing.T, c *kfake.Cluster, want map[string][]int, parse func([]byte) (string, int)) (dups map[string]int) {
	t.Helper()
	dups = map[string]int{}
	recs := kafkatest.ReadAll(t, c, kafkaconf.Default(), topic)
	sort.SliceStable(recs, func(i, j int) bool {
		if recs[i].Partition != recs[j].Partition {
			return recs[i].Partition < recs[j].Partition
		}
		return recs[i].Offset < recs[j].Offset
	})
	seen := map[string]map[int]bool{}
	last := map[string]int{}
	for _, r := range recs {
		key, n := parse(r.Value)
		if string(r.Key) != key {
			t.Errorf("record %s#%d has key %q", key, n, r.Key)
		}
		if seen[key] == nil {
			seen[key], last[key] = map[int]bool{}, -1
		}
		if seen[key][n] {
			dups[key]++
			continue
		}
		seen[key][n] = true
		if n < last[key] {
			t.Errorf("key %s: record %d first written after record %d (offset %d/%d)", key, n, last[key], r.Partition, r.Offset)
		}
		last[key] = max(last[key], n)
	}
	for key, ns := range want {
		for _, n := range ns {
			if !seen[key][n] {
				t.Errorf("key %s: record %d was accepted and is not in kafka", key, n)
			}
		}
	}
	return dups
}

// clientsAnswered waits until kproxy's producer clients hold no record,
// before a test ends the fault that refuses them: a request out when a
// flip took its records (spooled, answered 202) is then answered by the
// fault, not written. Ended first, the broker may write that request
// after all, beside the spool's copy: a duplicate the design allows
// (kproxy_spool_duplicates_possible_total), which a test counting every
// copy must not provoke by its timing.
func clientsAnswered(t *testing.T, p *proxy) {
	t.Helper()
	waitFor(t, "kproxy's producer clients to hold no record", func() bool { return kproxy.ClientRecords(p.srv) == 0 })
}

// spoolEmpty waits until the spool has drained.
func spoolEmpty(t *testing.T, p *proxy) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for p.metric(t, "kproxy_spool_records") != "0" {
		if time.Now().After(deadline) {
			t.Fatalf("spool not drained: kproxy_spool_records %s", p.metric(t, "kproxy_spool_records"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// postDirect posts a record (query without spool=) that must go to Kafka
// directly now that its topic's spooled records are acknowledged: with
// spool=0, so that it is refused 503 (not written) while the topic still
// spools, and waited for rather than spooled beside kgo's copy when the
// first write after an outage is slow (a loaded machine, past
// spool_after_ms). A 503 "not written" (still spooling, or a first write
// past a test's short produce_timeout_ms) is retried for up to 30 s.
// Fails the test unless it is answered 200.
func postDirect(t *testing.T, p *proxy, query string, body []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a := p.post(t, query+"&spool=0", body)
		if a.code == 200 {
			return
		}
		if a.code != 503 || !strings.Contains(a.body, "not written") || time.Now().After(deadline) {
			t.Fatalf("%s after its topic's spooled records were acknowledged: %d %s, want 200 (or 503 for at most 10 s while the topic leaves the spool)",
				query, a.code, a.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func health(t *testing.T, p *proxy) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + p.srv.AdminAddr().String() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestSpoolOutageDrainsOnceInKeyOrder: Kafka refuses every produce (no
// leader) while keys keep coming; each record is answered 202 once on
// disk; when Kafka comes back the spool drains, later records wait behind
// it, and every record answered 200 or 202 is in Kafka exactly once, per
// key in order, with its key and headers.
func TestSpoolOutageDrainsOnceInKeyOrder(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	// Above a write's time on a loaded machine: a write after the drain
	// slower than spool_after_ms flips the topic, and the records kgo
	// holds then are spooled beside their requests (possible duplicates,
	// 202 where this test wants 200).
	p := spoolProxy(t, c, func(cfg *kproxy.Config) { cfg.SpoolAfterMs = 2000 })
	f := kafkatest.NewFaults(t, c)

	const keys, perPhase = 6, 8
	var mu sync.Mutex
	accepted := map[string][]int{}
	codes := map[int]int{}
	phase := func(from int) {
		var wg sync.WaitGroup
		for k := range keys {
			key := "k" + strconv.Itoa(k)
			wg.Go(func() {
				for n := from; n < from+perPhase; n++ {
					req, _ := http.NewRequest("POST", p.url+"/commit?acks=-1&topic="+topic+"&key="+key, bytes.NewReader(keySeqValue(t, key, n)))
					req.Header.Set("X-Kafka-Header-Trace", key+"-"+strconv.Itoa(n))
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					mu.Lock()
					codes[resp.StatusCode]++
					switch resp.StatusCode {
					case 200, 202:
						accepted[key] = append(accepted[key], n)
					default:
						t.Errorf("%s#%d: %d %s", key, n, resp.StatusCode, b)
					}
					if resp.StatusCode == 202 && string(b) != "{\"spooled\":true}\n" {
						t.Errorf("202 body %q", b)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	phase(0) // Kafka up: 200s
	end := f.Outage(int16(kerr.NotLeaderForPartition.Code))
	phase(perPhase) // no leader: 202s
	if code, text := health(t, p); code != 200 || !strings.HasPrefix(text, "degraded: spooling") {
		t.Errorf("/health during the outage: %d %q", code, text)
	}
	clientsAnswered(t, p)
	end()
	phase(2 * perPhase) // back: the spool drains, the topic follows it
	spoolEmpty(t, p)
	phase(3 * perPhase) // and then straight to Kafka again
	if codes[202] < keys*perPhase {
		t.Errorf("answers %v: want at least %d 202s", codes, keys*perPhase)
	}
	if codes[200] < keys*perPhase*2 {
		t.Errorf("answers %v: want 200s before and after the outage", codes)
	}
	if dups := checkSpooledOrder(t, c, accepted); dups != 0 {
		t.Errorf("%d duplicates; Kafka refused outright, so none may be", dups)
	}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		key, n := parseKeySeq(t, r.Value)
		if len(r.Headers) != 1 || r.Headers[0].Key != "trace" || string(r.Headers[0].Value) != key+"-"+strconv.Itoa(n) {
			t.Errorf("%s#%d headers %v", key, n, r.Headers)
		}
	}
	// The drain acknowledges records in the spool (which empties it),
	// then counts them drained (ackDrained): the count may come after.
	spooled := p.metric(t, "kproxy_spooled_total")
	drained := settled(func() string { return p.metric(t, "kproxy_spool_drained_total") }, func(d string) bool { return d == spooled })
	if spooled != drained || spooled == "0" {
		t.Errorf("spooled %s, drained %s", spooled, drained)
	}
	if code, text := health(t, p); code != 200 || text != "ok" {
		t.Errorf("/health after the drain: %d %q", code, text)
	}
}

// postBatch sends a JSON batch and decodes the answer.
func postBatch(t testing.TB, p *proxy, query string, recs []map[string]any) (int, batchAnswerBody) {
	t.Helper()
	body, _ := json.Marshal(recs)
	resp, err := http.Post(p.url+"/batch?"+query, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a batchAnswerBody
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %d %q: %v", resp.StatusCode, b, err)
	}
	return resp.StatusCode, a
}

type batchAnswerBody struct {
	Error   string `json:"error"`
	Results []struct {
		Status  int  `json:"status"`
		Spooled bool `json:"spooled"`
	} `json:"results"`
}

// TestSpoolTransitionKeepsKeyOrder attacks the moment a topic starts
// spooling: Kafka is slow (each produce request held past spool_after_ms,
// then written, or its answer lost), so that when a record is given to the
// spool, later records of its key are in flight or buffered in kgo. None of
// them may reach Kafka before it: every batch record answered 200 or 202
// is in Kafka, and per key first copies are in order (a copy of a record
// whose request got no answer may follow, counted).
func TestSpoolTransitionKeepsKeyOrder(t *testing.T) {
	// One broker: kfake's held requests (SleepControl) race with
	// themselves across brokers under -race.
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}})
	p := spoolProxy(t, c, nil)
	f := kafkatest.NewFaults(t, c)

	const keys, batches, size = 3, 12, 20
	var mu sync.Mutex
	accepted := map[string][]int{}
	codes := map[int]int{}
	var wg sync.WaitGroup
	for k := range keys {
		key := "t" + strconv.Itoa(k)
		wg.Go(func() {
			for b := range batches {
				switch b {
				case 2:
					if k == 0 {
						f.ErrorProduce(40, kerr.NotLeaderForPartition.Code) // no leader for a while
					}
				case 6:
					if k == 0 {
						f.AppendThen(4, 0) // written, answer lost
					}
				}
				recs := make([]map[string]any, size)
				for i := range recs {
					n := b*size + i
					var v string
					msgpack.Unmarshal(keySeqValue(t, key, n), &v)
					recs[i] = map[string]any{"topic": topic, "key": key, "value": v}
				}
				code, a := postBatch(t, p, "acks=-1", recs)
				mu.Lock()
				codes[code]++
				for i, r := range a.Results {
					if r.Status == 0 || r.Status == 200 || r.Status == 202 {
						accepted[key] = append(accepted[key], b*size+i)
					}
					if r.Spooled != (r.Status == 202) {
						t.Errorf("result %+v", r)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	spoolEmpty(t, p)
	t.Logf("batch answers %v, faults %d", codes, f.Injected())
	if codes[202] == 0 {
		t.Fatalf("no batch was spooled (answers %v): the attack did not happen", codes)
	}
	// The values are JSON strings of the msgpack values' text: read back
	// through the JSON value.
	dups := checkKeyOrderJSON(t, c, accepted)
	possible, _ := strconv.Atoi(p.metric(t, "kproxy_spool_duplicates_possible_total"))
	if dups > possible {
		t.Errorf("%d duplicates in kafka, only %d counted as possible", dups, possible)
	}
	t.Logf("duplicates %d (counted possible %d)", dups, possible)
}

// checkKeyOrderJSON is checkSpooledOrder for records written from a JSON batch
// (values are JSON strings).
func checkKeyOrderJSON(t *testing.T, c *kfake.Cluster, want map[string][]int) int {
	t.Helper()
	return checkFirstCopies(t, c, want, func(v []byte) (string, int) {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			t.Fatalf("value %q: %v", v, err)
		}
		key, ns, _ := strings.Cut(s, "#")
		n, _ := strconv.Atoi(ns)
		return key, n
	})
}

// TestSpoolFullRefuses503: once the spool is full, records are refused
// with 503 (not written), nothing half-written; every 202 reaches Kafka
// when it comes back.
func TestSpoolFullRefuses503(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, func(cfg *kproxy.Config) { cfg.SpoolMaxBytes = 1 << 20 })
	f := kafkatest.NewFaults(t, c)
	end := f.Outage(int16(kerr.NotLeaderForPartition.Code))
	big := strings.Repeat("x", 100_000)
	var spooled []int
	full := 0
	for n := 0; n < 20; n++ {
		body, _ := msgpack.Marshal(fmt.Sprintf("k#%d#%s", n, big))
		a := p.post(t, "topic="+topic+"&key=k", body)
		switch a.code {
		case 202:
			if full > 0 {
				t.Errorf("record %d spooled after one was refused as full", n)
			}
			spooled = append(spooled, n)
		case 503:
			full++
			if !strings.Contains(a.body, "spool is full") || !strings.Contains(a.body, "not written") {
				t.Errorf("503 body %q", a.body)
			}
		default:
			t.Fatalf("record %d: %d %s", n, a.code, a.body)
		}
	}
	if full == 0 || len(spooled) == 0 {
		t.Fatalf("spooled %d, refused %d: want both", len(spooled), full)
	}
	if code, text := health(t, p); code != 503 || !strings.HasPrefix(text, "spool full") {
		t.Errorf("/health with a full spool: %d %q", code, text)
	}
	clientsAnswered(t, p)
	end()
	spoolEmpty(t, p)
	got := map[int]int{}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		var s string
		msgpack.Unmarshal(r.Value, &s)
		n, _ := strconv.Atoi(strings.Split(s, "#")[1])
		got[n]++
	}
	for _, n := range spooled {
		if got[n] != 1 {
			t.Errorf("record %d answered 202 is %d times in kafka", n, got[n])
		}
	}
	if len(got) != len(spooled) {
		t.Errorf("kafka holds %d records, %d were answered 202", len(got), len(spooled))
	}
}

// TestSpoolZeroAndAtomicNeverSpooled: spool=0 gets today's answer (503
// not written, after produce_timeout_ms) during an outage, and 503 while
// its topic has records in the spool; an atomic batch is never spooled.
func TestSpoolZeroAndAtomicNeverSpooled(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 1000 })
	f := kafkatest.NewFaults(t, c)
	end := f.Outage(int16(kerr.NotLeaderForPartition.Code))

	a := p.post(t, "topic="+topic+"&key=a&spool=0", unique(t, "zero-1"))
	if a.code != 503 || !strings.Contains(a.body, "not written") {
		t.Errorf("spool=0 during an outage: %d %q, want 503 not written", a.code, a.body)
	}
	code, ab := postBatch(t, p, "acks=-1&atomic=1", []map[string]any{{"topic": topic, "key": "a", "value": 1}})
	if code == 202 || code == 200 {
		t.Errorf("atomic batch during an outage: %d %+v", code, ab)
	}
	if a := p.post(t, "topic="+topic+"&key=a", unique(t, "spooled-1")); a.code != 202 {
		t.Fatalf("record during an outage: %d %q", a.code, a.body)
	}
	a = p.post(t, "topic="+topic+"&key=a&spool=0", unique(t, "zero-2"))
	if a.code != 503 || !strings.Contains(a.body, "spool") {
		t.Errorf("spool=0 while the topic spools: %d %q", a.code, a.body)
	}
	code, ab = postBatch(t, p, "acks=-1&spool=0", []map[string]any{{"topic": topic, "key": "a", "value": 2}})
	if code != 503 || len(ab.Results) != 1 || ab.Results[0].Spooled {
		t.Errorf("spool=0 batch while the topic spools: %d %+v", code, ab)
	}
	if a := p.post(t, "topic="+topic+"&key=a&spool=2", unique(t, "bad")); a.code != 400 {
		t.Errorf("spool=2: %d %q", a.code, a.body)
	}
	clientsAnswered(t, p)
	end()
	spoolEmpty(t, p)
	kafka := inKafka(t, c)
	for v := range kafka {
		var s string
		msgpack.Unmarshal([]byte(v), &s)
		if strings.HasPrefix(s, "zero") {
			t.Errorf("record %q answered 503 is in kafka", s)
		}
	}
	if kafka[string(unique(t, "spooled-1"))] != 1 {
		t.Errorf("spooled record not in kafka once: %v", kafka)
	}
	postDirect(t, p, "topic="+topic+"&key=a", unique(t, "zero-3"))
}

func TestSpoolConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit func(*kproxy.Config)
		want string
	}{
		{func(c *kproxy.Config) { c.SpoolAfterMs = 0 }, "spool_after_ms: must be >= 1, got 0"},
		{func(c *kproxy.Config) { c.SpoolDir, c.SpoolAfterMs = "/x", 10_000 }, "spool_after_ms: must be below produce_timeout_ms (10000), got 10000"},
		{func(c *kproxy.Config) { c.SpoolMaxBytes = 1000 }, "spool_max_bytes: must be >= 1048576 (1 MiB), got 1000"},
		// A spool without room for a record of max_message_bytes is full
		// for /health (503 "spool full: 0 records") from the first moment
		// of every outage, empty.
		{func(c *kproxy.Config) { c.SpoolDir, c.MaxMessageBytes, c.SpoolMaxBytes = "/x", 2_000_000, 1<<20 },
			"spool_max_bytes: must be >= max_message_bytes (2000000), got 1048576"},
	} {
		cfg := kproxy.DefaultConfig()
		cfg.BrokerHosts = []string{"127.0.0.1:9092"}
		tc.edit(&cfg)
		err := cfg.Validate("kproxy.yaml")
		if err == nil || !strings.Contains(err.Error(), "kproxy.yaml: "+tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}
