package ktransfer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// produceRecords writes recs, acknowledged by every replica.
func (e *env) produceRecords(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkatest.Client(t, e.kafka, e.kc).ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records: %v", len(recs), err)
	}
}

// offsetsSum is the sum of the committed offsets of partitions 0..n-1.
func offsetsSum(t *testing.T, e *env, module, topic string, n int) int {
	sum := 0
	for p := range n {
		v, _ := strconv.Atoi(e.storedOffset(t, module, topic, p))
		sum += v
	}
	return sum
}

// targeted is a record of topic with key, value and the target header.
func targeted(topic, key, value, url string) *kgo.Record {
	r := &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(value)}
	if url != "" {
		r.Headers = []kgo.RecordHeader{{Key: "target", Value: []byte(url)}}
	}
	return r
}

// TestTargetAllowList: a record's target URL is pushed to only when its
// host:port is one of backend_servers. Attacker-chosen targets — another
// host, another port (a server that listens), user information that names
// an allowed host before the real one, other schemes, no port (80), the
// header twice — are given up at once with "target not allowed" and
// dead-lettered, with their headers; the server they named gets nothing.
// Allowed targets receive their records at their own path and query, with
// the backend's normalized host:port as Host, one key's records in order;
// a record without the header goes to the module's uri; a target's retries
// go to the same URL.
func TestTargetAllowList(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	evil := newBackend(t, nil)
	var refusedOnce atomic.Bool
	other := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if p.body == "retry" && refusedOnce.CompareAndSwap(false, true) {
			w.WriteHeader(503)
		}
	})
	b := newBackend(t, nil)
	allowed := strings.TrimPrefix(b.URL, "http://")
	_, port, _ := strings.Cut(allowed, ":")
	m := module("m", "t", b.URL, other.URL)
	m.Protocol.TargetHeader = "Target" // kproxy lower-cases record header names: matched without case
	m.DeadLetterTopic = "dlq"
	refused := map[string]string{ // value → target
		"other host":      "http://evil.example:" + port + "/hook",
		"other port":      evil.URL + "/hook",
		"userinfo":        "http://" + allowed + "@" + strings.TrimPrefix(evil.URL, "http://") + "/hook",
		"userinfo same":   "http://user:pw@" + allowed + "/hook",
		"https":           "https://" + allowed + "/hook",
		"ftp":             "ftp://" + allowed + "/hook",
		"no scheme":       "//" + allowed + "/hook",
		"relative":        "/hook",
		"default port 80": "http://127.0.0.1/hook",
		"port zero":       "http://127.0.0.1:0/hook",
		"opaque":          "http:" + allowed,
	}
	var recs []*kgo.Record
	for value, url := range refused {
		recs = append(recs, targeted("t", "bad-"+value, value, url))
	}
	twice := targeted("t", "bad-twice", "twice", "http://"+allowed+"/hook")
	twice.Headers = append(twice.Headers, kgo.RecordHeader{Key: "TARGET", Value: []byte(evil.URL + "/")})
	recs = append(recs, twice)
	for i := range 30 {
		recs = append(recs, targeted("t", "k"+strconv.Itoa(i%3), strconv.Itoa(i), "http://LOCALHOST.:"+port+"/hook/"+strconv.Itoa(i%3)+"?n="+strconv.Itoa(i)))
	}
	recs = append(recs, targeted("t", "plain", "plain", ""))
	recs = append(recs, targeted("t", "retry", "retry", other.URL+"/again"))
	// localhost is allowed only as named in backend_servers: add it there.
	m.BackendServers = append(m.BackendServers, "localhost:"+port)
	e.produceRecords(t, recs...)
	e.start(t, m)
	waitFor(t, "every record handled", 15*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) != "" && offsetsSum(t, e, "m", "t", 2) == len(recs)
	})
	time.Sleep(200 * time.Millisecond)

	if n := len(evil.got()); n != 0 {
		t.Errorf("the server no backend_servers entry names got %d pushes", n)
	}
	dead := map[string]map[string]string{}
	for _, rec := range kafkatest.ReadAll(t, e.kafka, e.kc, "dlq") {
		h := map[string]string{}
		for _, kv := range rec.Headers {
			h[strings.ToLower(kv.Key)] = string(kv.Value)
		}
		dead[string(rec.Value)] = h
	}
	for value, url := range refused {
		h, ok := dead[value]
		switch {
		case !ok:
			t.Errorf("%s (%s): not dead-lettered", value, url)
		case !strings.HasPrefix(h["ktransfer-reason"], "target not allowed: "):
			t.Errorf("%s (%s): reason %q", value, url, h["ktransfer-reason"])
		case h["target"] != url:
			t.Errorf("%s: the dead letter's target header %q, want the record's %q", value, h["target"], url)
		}
	}
	if h := dead["twice"]; !strings.HasPrefix(h["ktransfer-reason"], "target not allowed: header Target given 2 times") {
		t.Errorf("a record naming two targets: reason %q", h["ktransfer-reason"])
	}
	if len(dead) != len(refused)+1 {
		t.Errorf("%d dead letters, want %d: %v", len(dead), len(refused)+1, dead)
	}

	plain := 0
	for _, p := range append(b.got(), other.got()...) {
		if p.body == "plain" {
			plain++
			if p.path != "/push/t" || p.key != "plain" {
				t.Errorf("a record without the header went to %s?%s", p.path, p.query)
			}
		}
	}
	if plain != 1 {
		t.Errorf("the record without the header was pushed %d times", plain)
	}
	last := map[string]int{}
	for _, p := range b.got() {
		if p.body == "plain" {
			continue
		}
		i, err := strconv.Atoi(p.body)
		if err != nil {
			t.Errorf("unexpected push %+v", p)
			continue
		}
		key := strconv.Itoa(i % 3)
		if want := fmt.Sprintf("/hook/%s n=%d localhost:%s", key, i, port); p.path+" "+p.query+" "+p.host != want { // Host: the backend's host:port, not the URL's spelling
			t.Errorf("push of %d: %s %s %s, want %s", i, p.path, p.query, p.host, want)
		}
		if prev, ok := last[key]; ok && i <= prev {
			t.Errorf("key k%s: record %d pushed after %d", key, i, prev)
		}
		last[key] = i
	}
	var again []string
	for _, p := range other.got() {
		if p.body == "retry" {
			again = append(again, p.path)
		}
	}
	if strings.Join(again, " ") != "/again /again" {
		t.Errorf("the target refused once (503) got %v; want its retry at the same URL", again)
	}
}

// TestTargetNotAllowedWithoutDeadLetter: without a dead-letter topic a
// record whose target is not allowed is given up at once, logged as an
// error with the reason, and its offset committed; it is not retried.
func TestTargetNotAllowedWithoutDeadLetter(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	evil := newBackend(t, nil)
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.Protocol.TargetHeader = "target"
	e.produceRecords(t, targeted("t", "a", "attack", evil.URL+"/x"), targeted("t", "b", "fine", b.URL+"/y"))
	var logs runtest.Log
	tr, err := ktransfer.New(e.config(t, 0, m), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "both records committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "2" })
	if len(evil.got()) != 0 || len(b.got()) != 1 || b.got()[0].path != "/y" {
		t.Errorf("evil got %d pushes, the backend %v", len(evil.got()), b.got())
	}
	if text := logs.String(); !strings.Contains(text, "level=ERROR msg=\"record given up\"") || !strings.Contains(text, "target not allowed: "+strings.TrimPrefix(evil.URL, "http://")+" is not in backend_servers") {
		t.Errorf("the refusal is not logged as an error with its reason:\n%s", text)
	}
}

// startKproxy runs a kproxy on 127.0.0.1 in front of e's Kafka, read
// and write timeouts 2 s, until the test ends.
func (e *env) startKproxy(t *testing.T) *kproxy.Server {
	t.Helper()
	cfg := kproxy.DefaultConfig()
	cfg.Port, cfg.ListenHost, cfg.AdminAddr = 0, "127.0.0.1", ""
	cfg.BrokerHosts = e.kafka.ListenAddrs()
	cfg.ReadTimeoutMs, cfg.WriteTimeoutMs = 2000, 2000
	srv, err := kproxy.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, srv.Run, 30*time.Second)
	return srv
}

// TestAsynchronousCall: a client posts a body to kproxy with the URL to
// call in X-Kafka-Header-Target; ktransfer calls that URL with the body,
// later, in key order.
func TestAsynchronousCall(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "calls", Partitions: 2})
	b := newBackend(t, nil)
	m := module("async", "calls", b.URL)
	m.Protocol.TargetHeader = "target"
	e.start(t, m)

	srv := e.startKproxy(t)
	for i := range 20 {
		req, _ := http.NewRequest("POST", "http://"+srv.Addr().String()+"/commit?topic=calls&key=order-"+strconv.Itoa(i%2),
			strings.NewReader(`{"n":`+strconv.Itoa(i)+`}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Kafka-Header-Target", b.URL+"/callback/"+strconv.Itoa(i%2)+"?call="+strconv.Itoa(i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("commit %d: %d", i, resp.StatusCode)
		}
	}
	waitFor(t, "20 calls", 10*time.Second, func() bool { return len(b.got()) >= 20 })
	last := map[string]int{}
	for _, p := range b.got() {
		var n int
		if _, err := fmt.Sscanf(p.body, `{"n":%d}`, &n); err != nil {
			t.Fatalf("body %q", p.body)
		}
		if want := fmt.Sprintf("/callback/%d call=%d", n%2, n); p.path+" "+p.query != want {
			t.Errorf("call %d went to %s?%s, want %s", n, p.path, p.query, want)
		}
		if prev, ok := last[p.path]; ok && n <= prev {
			t.Errorf("key order: call %d after %d", n, prev)
		}
		last[p.path] = n
	}
}

// TestTargetWithSpaceNotAllowed: a target URL whose query holds a space
// (which url.Parse lets through in a query) is not a URL a request line
// can carry: sent as it is, the space splits the request line
// ("POST http://h/p?a=b HTTP/1.0 HTTP/1.1"), and the backend answers a
// request it cannot parse. It is refused as any target not allowed:
// given up at once with the reason, not retried for ever as the backend's
// refusal of the record.
func TestTargetWithSpaceNotAllowed(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.Protocol.TargetHeader = "target"
	e.produceRecords(t, targeted("t", "a", "spaced", b.URL+"/x?a=b HTTP/1.0"), targeted("t", "b", "fine", b.URL+"/y"))
	var logs runtest.Log
	tr, err := ktransfer.New(e.config(t, 0, m), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	deadline := time.Now().Add(8 * time.Second)
	for e.storedOffset(t, "m", "t", 0) != "2" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if off := e.storedOffset(t, "m", "t", 0); off != "2" {
		t.Fatalf("offset %q after 8 s, want 2: the record with a space in its target is still retried; log:\n%.2000s", off, logs.String())
	}
	for _, p := range b.got() {
		if p.body == "spaced" {
			t.Errorf("the record with a space in its target was pushed: %s?%s", p.path, p.query)
		}
	}
	if text := logs.String(); !strings.Contains(text, "target not allowed: ") {
		t.Errorf("the refusal is not logged with its reason:\n%s", text)
	}
}
