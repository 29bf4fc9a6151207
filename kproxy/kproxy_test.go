package kproxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

const topic = "events"

// proxy is a kproxy serving on a loopback port for one test.
type proxy struct {
	srv  *kproxy.Server
	url  string
	stop func() error // cancels Run and returns its error
}

func startProxy(t *testing.T, c *kfake.Cluster, edit func(*kproxy.Config)) *proxy {
	t.Helper()
	return runProxy(t, newServer(t, c, edit))
}

// newServer is startProxy's server, not running yet.
func newServer(t *testing.T, c *kfake.Cluster, edit func(*kproxy.Config)) *kproxy.Server {
	t.Helper()
	cfg := kproxy.DefaultConfig()
	cfg.Port = 0
	cfg.ListenHost = "127.0.0.1"
	cfg.AdminAddr = "127.0.0.1:0"
	if c != nil { // nil: edit names the brokers
		cfg.BrokerHosts = c.ListenAddrs()
	}
	cfg.ReadTimeoutMs, cfg.WriteTimeoutMs = 2000, 2000
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := kproxy.New(cfg, log)
	if err != nil {
		t.Fatalf("kproxy.New: %v", err)
	}
	return srv
}

// runProxy runs srv until the test ends.
func runProxy(t *testing.T, srv *kproxy.Server) *proxy {
	t.Helper()
	stop := runtest.Start(t, srv.Run, 30*time.Second)
	return &proxy{srv: srv, url: "http://" + srv.Addr().String(), stop: stop}
}

type answer struct {
	code int
	body string
	hdr  http.Header
}

func (p *proxy) post(t testing.TB, query string, body []byte) answer {
	t.Helper()
	resp, err := http.Post(p.url+"/commit?"+query, "application/msgpack", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", query, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

type result struct {
	Partition int32  `json:"partition"`
	Offset    *int64 `json:"offset"`
}

func decode(t testing.TB, a answer) result {
	t.Helper()
	if a.code != 200 {
		t.Fatalf("status %d: %s", a.code, a.body)
	}
	var r result
	if err := json.Unmarshal([]byte(a.body), &r); err != nil {
		t.Fatalf("decode %q: %v", a.body, err)
	}
	return r
}

func record(t testing.TB, v map[string]any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readRecord reads the record at partition/offset with a real consumer.
func readRecord(t testing.TB, c *kfake.Cluster, topic string, partition int32, offset int64) *kgo.Record {
	t.Helper()
	cl := kafkatest.Client(t, c, kafkaconf.Default(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topic: {partition: kgo.NewOffset().At(offset)},
	}))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		for _, r := range fs.Records() {
			if r.Offset == offset {
				return r
			}
		}
	}
	t.Fatalf("no record at %s/%d@%d", topic, partition, offset)
	return nil
}

// endOffsets sums the log-end offsets of topic's partitions.
func endOffsets(t testing.TB, c *kfake.Cluster, topic string) int64 {
	t.Helper()
	return kafkatest.Records(t, c, kafkaconf.Default(), topic)
}

func TestRoundTripByteForByte(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, nil)
	bodies := [][]byte{
		record(t, map[string]any{"method": "TestUserName", "uid": 7, "blob": bytes.Repeat([]byte{0, 0xff}, 500)}),
		{0xc0},                      // nil
		{0xa0},                      // empty string
		{0xc4, 3, 0x00, 0x0d, 0x0a}, // bin with NUL, CR, LF
		append([]byte{0xd9, 200}, bytes.Repeat([]byte("é"), 100)...), // str8 of UTF-8
	}
	for i, body := range bodies {
		key := "user-" + strconv.Itoa(i)
		r := decode(t, p.post(t, "topic="+topic+"&key="+key, body))
		if r.Offset == nil {
			t.Fatalf("acks=1 answer without offset")
		}
		m := readRecord(t, c, topic, r.Partition, *r.Offset)
		if !bytes.Equal(m.Value, body) {
			t.Errorf("record %d: value % x, sent % x", i, m.Value, body)
		}
		if string(m.Key) != key {
			t.Errorf("record %d: key %q, sent %q", i, m.Key, key)
		}
	}
	// No key: the record is written with a null key.
	r := decode(t, p.post(t, "topic="+topic, bodies[0]))
	if m := readRecord(t, c, topic, r.Partition, *r.Offset); m.Key != nil {
		t.Errorf("keyless record has key %q", m.Key)
	}
}

// javaMurmur2 are hashes computed by Kafka's Java client
// (org.apache.kafka.common.utils.Utils.murmur2).
var javaMurmur2 = map[string]int32{
	"1": -1993445489, "12": 126087238, "123": -267702483, "1234": -1614185708, "12345": -1188365604,
}

func TestKeyRoutingMatchesJavaClient(t *testing.T) {
	for _, n := range []int32{3, 7, 16} {
		t.Run(fmt.Sprintf("%d partitions", n), func(t *testing.T) {
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: n}})
			p := startProxy(t, c, nil)
			body := record(t, map[string]any{"a": 1})
			for key, hash := range javaMurmur2 {
				want := int32(uint32(hash)&0x7fffffff) % n // Utils.toPositive(hash) % n
				for range 3 {
					if got := decode(t, p.post(t, "topic="+topic+"&key="+key, body)).Partition; got != want {
						t.Errorf("key %q: partition %d, Java client chooses %d", key, got, want)
					}
				}
			}
		})
	}
}

func TestKeylessRecordsSpread(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 4}})
	p := startProxy(t, c, nil)
	seen := map[int32]bool{}
	for range 200 {
		seen[decode(t, p.post(t, "topic="+topic, []byte{0x01})).Partition] = true
	}
	if len(seen) < 3 {
		t.Errorf("200 keyless records landed on partitions %v only", seen)
	}
}

func TestAcksLevels(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}})
	p := startProxy(t, c, nil)
	var sawAcks [3]int16
	var mu sync.Mutex
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		acks := req.(*kmsg.ProduceRequest).Acks
		mu.Lock()
		sawAcks[acks+1]++ // -1, 0, 1 → 0, 1, 2
		mu.Unlock()
		return nil, nil, false
	})
	body := record(t, map[string]any{"x": "y"})
	for _, tc := range []struct {
		query      string
		wireAcks   int16
		wantOffset bool
	}{
		{"", 1, true}, {"&acks=1", 1, true}, {"&acks=-1", -1, true}, {"&acks=all", -1, true}, {"&acks=0", 0, false},
	} {
		r := decode(t, p.post(t, "topic="+topic+"&key=k"+tc.query, body))
		if (r.Offset != nil) != tc.wantOffset {
			t.Errorf("acks%s: offset in answer = %v, want %v", tc.query, r.Offset != nil, tc.wantOffset)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for endOffsets(t, c, topic) != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("end offsets %d, want 5 records", endOffsets(t, c, topic))
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	// acks=0 records are answered without waiting, but they are delivered
	// like acks=1 ones (retried, refusals counted).
	if sawAcks[0] == 0 || sawAcks[2] == 0 {
		t.Errorf("produce requests by acks (-1, 0, 1) = %v; -1 and 1 must reach the broker", sawAcks)
	}
}

// TestAcksZeroLossIsCounted: acks=0 records are answered as soon as kproxy
// holds them; when the broker then refuses them for good, they are counted
// in kproxy_acks0_lost_records_total (the HTTP answers are gone by then).
func TestAcksZeroLossIsCounted(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return kafkatest.ProduceError(req.(*kmsg.ProduceRequest), kerr.InvalidRecord.Code), nil, true
	})
	for i := range 5 {
		if a := p.post(t, "topic="+topic+"&acks=0&key=k"+strconv.Itoa(i), []byte{0x01}); a.code != 200 {
			t.Fatalf("acks=0: %d %q", a.code, a.body)
		}
	}
	lost := func() string { return p.metric(t, "kproxy_acks0_lost_records_total") }
	deadline := time.Now().Add(15 * time.Second)
	for lost() != "5" {
		if time.Now().After(deadline) {
			t.Fatalf("kproxy_acks0_lost_records_total = %s, want 5", lost())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric is the value of a metric without labels on the admin listener.
func (p *proxy) metric(t testing.TB, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.srv.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return "absent"
}

func TestBadRequests(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.MaxRequestSizeBytes = 4096
		cfg.MaxMessageBytes = 1024
		cfg.AutoCreateTopics = false
	})
	ok := record(t, map[string]any{"k": "v"})
	cases := []struct {
		name, query string
		body        []byte
		code        int
		reason      string
	}{
		{"no topic", "key=a", ok, 400, "missing topic"},
		{"empty body", "topic=" + topic, nil, 400, "empty body"},
		{"bad msgpack", "topic=" + topic, []byte{0x92, 0x01}, 400, "not one msgpack value"},
		{"trailing bytes", "topic=" + topic, append(append([]byte{}, ok...), 0x01), 400, "trailing"},
		{"bad acks", "topic=" + topic + "&acks=2", ok, 400, "acks must be"},
		{"empty acks", "topic=" + topic + "&acks=", ok, 400, "acks must be"},
		{"acks without value", "topic=" + topic + "&acks", ok, 400, "acks must be"},
		{"topic twice", "topic=" + topic + "&topic=__consumer_offsets", ok, 400, "topic given more than once"},
		// A known parameter in another case is a typo, not one of the
		// other parameters /commit ignores: it wrote a record without its
		// key (or at acks=1).
		{"key in another case", "topic=" + topic + "&Key=a", ok, 400, `parameter "Key": did you mean "key"`},
		{"acks in another case", "topic=" + topic + "&ACKS=-1", ok, 400, `parameter "ACKS": did you mean "acks"`},
		{"spool in another case", "topic=" + topic + "&Spool=0", ok, 400, `parameter "Spool": did you mean "spool"`},
		{"topic in another case", "Topic=" + topic, ok, 400, `parameter "Topic": did you mean "topic"`},
		{"bad topic name", "topic=a%2Fb", ok, 400, "topic name"},
		{"internal topic", "topic=__consumer_offsets", ok, 403, "kafka-internal"},
		{"unknown topic", "topic=no_such_topic", ok, 404, "unknown topic"},
		{"body over max_request_size_bytes", "topic=" + topic, append([]byte{0xc5, 0x13, 0x88}, make([]byte, 5000)...), 413, "max_request_size_bytes"},
		{"record over max_message_bytes", "topic=" + topic, append([]byte{0xc5, 0x07, 0xd0}, make([]byte, 2000)...), 413, "max_message_bytes"},
	}
	for _, tc := range cases {
		a := p.post(t, tc.query, tc.body)
		if a.code != tc.code || !strings.Contains(a.body, tc.reason) || strings.Count(a.body, "\n") != 1 {
			t.Errorf("%s: got %d %q, want %d with a one-line reason containing %q", tc.name, a.code, a.body, tc.code, tc.reason)
		}
	}
	resp, err := http.Get(p.url + "/commit?topic=" + topic)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow=%q, want 405 Allow=POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records written by rejected requests", n)
	}
}

// TestBodyTooLargeRefusedUnread checks that a declared oversized body is
// answered 413 without kproxy reading it: the client never sends it.
func TestBodyTooLargeRefusedUnread(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.MaxRequestSizeBytes = 1000 })
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /commit?topic=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n", topic)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	status, err := io.ReadAll(io.LimitReader(conn, 12))
	if err != nil || string(status) != "HTTP/1.1 413" {
		t.Fatalf("answer to 100 MB declared body: %q, %v; want HTTP/1.1 413 before any body byte", status, err)
	}
}

func TestUnknownTopicAutoCreatedWhenClusterAllows(t *testing.T) {
	c := kafkatest.Start(t, nil, kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(2))
	p := startProxy(t, c, nil)
	decode(t, p.post(t, "topic=fresh", []byte{0x01}))

	c2 := kafkatest.Start(t, nil, kfake.AllowAutoTopicCreation())
	p2 := startProxy(t, c2, func(cfg *kproxy.Config) { cfg.AutoCreateTopics = false })
	if a := p2.post(t, "topic=fresh", []byte{0x01}); a.code != 404 {
		t.Errorf("auto_create_topics: false: got %d %q, want 404", a.code, a.body)
	}
}

// holdProduce makes the broker sit on produce requests until release is
// closed; other requests are served meanwhile.
func holdProduce(c *kfake.Cluster, release <-chan struct{}, held *atomic.Int32) {
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		held.Add(1)
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
}

// awaitShutdown waits until srv's /health answers 503 "shutting down": Run
// has begun its shutdown (step 1 of its order) and waits for the requests
// in flight.
func awaitShutdown(t testing.TB, srv *kproxy.Server) {
	t.Helper()
	waitFor(t, "/health answering 503 shutting down", func() bool {
		resp, err := http.Get("http://" + srv.AdminAddr().String() + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 503 && strings.Contains(string(b), "shutting down")
	})
}

// waitFor polls cond until it holds, at most 30 s: what the tests wait for
// (a request at the broker, records in Kafka, a drain) takes Kafka's and
// kproxy's round trips, which a loaded machine (the race detector, other
// packages' tests) can stretch to seconds. Waits whose time is what a test
// checks have their own bound.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	const within = 30 * time.Second
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%v)", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settled reads a value kproxy writes in the background after what the
// test waited for (a counter moved just after another one) until ok holds
// of it, for up to 30 s (a loaded machine's delay), and returns what it read
// last: the caller checks that as it would have checked a single read, and
// fails with it.
func settled[T any](read func() T, ok func(T) bool) T {
	v := read()
	for deadline := time.Now().Add(30 * time.Second); !ok(v) && time.Now().Before(deadline); v = read() {
		time.Sleep(10 * time.Millisecond)
	}
	return v
}

func TestOverloadedAnswers503(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ReqPoolSize = 2 })
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)

	body := []byte{0x01}
	codes := make(chan int, 2)
	for range 2 {
		go func() { codes <- p.post(t, "topic="+topic+"&key=a", body).code }()
	}
	waitFor(t, "a produce request at the broker", func() bool { return held.Load() > 0 })
	waitFor(t, "both requests in flight", func() bool { return p.srv.InFlight() == 2 })
	a := p.post(t, "topic="+topic, body)
	if a.code != 503 || a.hdr.Get("Retry-After") == "" || !strings.Contains(a.body, "req_pool_size") {
		t.Errorf("third request: %d Retry-After=%q %q; want 503 with Retry-After", a.code, a.hdr.Get("Retry-After"), a.body)
	}
	close(release)
	for range 2 {
		if code := <-codes; code != 200 {
			t.Errorf("held request answered %d, want 200", code)
		}
	}
	if n := endOffsets(t, c, topic); n != 2 {
		t.Errorf("%d records in the topic, want the 2 accepted", n)
	}
}

func TestProduceTimeoutAnswers504(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 300 })
	release := make(chan struct{})
	defer close(release)
	var held atomic.Int32
	holdProduce(c, release, &held)
	start := time.Now()
	a := p.post(t, "topic="+topic, []byte{0x01})
	if a.code != 504 || !strings.Contains(a.body, "may have been written") {
		t.Errorf("got %d %q, want 504 saying the record may have been written", a.code, a.body)
	}
	if d := time.Since(start); d > 5*time.Second { // 300 ms, the grace and a loaded machine's stalls
		t.Errorf("504 after %v; produce_timeout_ms is 300", d)
	}
}

func TestKafkaErrorsAreNot200(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	for _, tc := range []struct {
		code     int16
		want     int
		requests int
	}{
		{-1, 502, 1}, // UNKNOWN_SERVER_ERROR
		{29, 403, 1}, // TOPIC_AUTHORIZATION_FAILED
		{87, 503, 1}, // INVALID_RECORD: of the record's batch, perhaps for another record; not written
		// Last: MESSAGE_TOO_LARGE purges the topic from the client in the
		// background, which fails a record sent meanwhile with 504.
		{10, 503, 1}, // MESSAGE_TOO_LARGE of a record that fits the topic: refused with its batch, not written
	} {
		failProduce(t, c, tc.code, tc.requests)
		if a := p.post(t, "topic="+topic, []byte{0x01}); a.code != tc.want {
			t.Errorf("kafka error %d: answered %d %q, want %d", tc.code, a.code, a.body, tc.want)
		}
	}
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records written", n)
	}
}

func TestKafkaUnreachable(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 5000 })
	decode(t, p.post(t, "topic="+topic, []byte{0x01}))
	c.Close()
	a := p.post(t, "topic="+topic, []byte{0x01})
	if a.code != 503 && a.code != 502 && a.code != 504 {
		t.Errorf("broker gone: %d %q, want 502/503/504", a.code, a.body)
	}
	if a.code == 503 && a.hdr.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
}

func TestNewFailsWithoutKafka(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	cfg := kproxy.DefaultConfig()
	cfg.Port, cfg.AdminAddr, cfg.BrokerHosts = 0, "", []string{dead}
	cfg.Kafka.DialTimeoutMs = 200
	_, err = kproxy.New(cfg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), dead) {
		t.Fatalf("New with no broker at %s: %v; want an error naming it", dead, err)
	}
}

// TestShutdownLosesNothing stops kproxy while requests wait on the broker:
// every request answered 200 is in Kafka, and every request is answered.
func TestShutdownLosesNothing(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 4}})
	p := startProxy(t, c, nil)
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)

	const clients = 40
	var ok, failed atomic.Int32
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			resp, err := http.Post(p.url+"/commit?topic="+topic+"&key=k"+strconv.Itoa(i), "", bytes.NewReader([]byte{0x01}))
			if err != nil {
				failed.Add(1) // refused connection: nothing written, client knows
				return
			}
			resp.Body.Close()
			if resp.StatusCode == 200 {
				ok.Add(1)
			} else {
				failed.Add(1)
			}
		})
	}
	waitFor(t, "requests in flight", func() bool { return p.srv.InFlight() == clients })
	stopped := make(chan error, 1)
	go func() { stopped <- p.stop() }()
	awaitShutdown(t, p.srv) // shutdown has begun and waits for in-flight requests
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	wg.Wait()
	if ok.Load() != clients {
		t.Errorf("%d of %d in-flight requests answered 200 (%d failed)", ok.Load(), clients, failed.Load())
	}
	if n := endOffsets(t, c, topic); n != int64(ok.Load()) {
		t.Errorf("%d records in Kafka, %d answered 200", n, ok.Load())
	}
	if _, err := http.Post(p.url+"/commit?topic="+topic, "", bytes.NewReader([]byte{0x01})); err == nil {
		t.Errorf("request accepted after shutdown")
	}
}

func TestAdminEndpoints(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	decode(t, p.post(t, "topic="+topic, []byte{0x01}))
	p.post(t, "topic=", []byte{0x01})
	admin := "http://" + p.srv.AdminAddr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/health"); code != 200 || body != "ok\n" {
		t.Errorf("/health: %d %q", code, body)
	}
	code, metrics := get("/metrics")
	for _, want := range []string{
		`kproxy_requests_total{code="200"} 1`, `kproxy_requests_total{code="400"} 1`,
		"kproxy_request_duration_seconds_count 2", "kproxy_requests_in_flight 0", `kproxy_records_total{acks="1"} 1`,
	} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get("/debug/pprof/"); code != 200 {
		t.Errorf("/debug/pprof/: %d", code)
	}
	if !strings.HasPrefix(p.srv.AdminAddr().String(), "127.0.0.1:") {
		t.Errorf("admin listener on %s", p.srv.AdminAddr())
	}
}

// failProduce answers the next n produce requests with the Kafka error code.
func failProduce(t testing.TB, c *kfake.Cluster, code int16, n int) *kafkatest.Faults {
	f := kafkatest.NewFaults(t, c)
	f.ErrorProduce(n, code)
	return f
}

func TestTransientKafkaErrorsAreRetried(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	// A produce timeout of 5 s, not the default 10 s: the refusal that
	// never recovers is answered 503 when it expires; the two refusals
	// then a write take a fraction of a second.
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 5000 })
	f := failProduce(t, c, 6, 2) // NOT_LEADER_OR_FOLLOWER twice, then the broker writes
	r := decode(t, p.post(t, "topic="+topic+"&key=k", []byte{0x07}))
	if f.Injected() != 2 {
		t.Errorf("%d produce requests refused, want 2 before the one written", f.Injected())
	}
	if m := readRecord(t, c, topic, r.Partition, *r.Offset); !bytes.Equal(m.Value, []byte{0x07}) {
		t.Errorf("record at answered offset is % x", m.Value)
	}

	failProduce(t, c, 6, 100) // never recovers: the client hears it
	if a := p.post(t, "topic="+topic, []byte{0x01}); a.code != 503 {
		t.Errorf("persistent NOT_LEADER: %d %q, want 503", a.code, a.body)
	}
}

func TestLingerStillAnswers(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.LingerMs = 20; cfg.Compression = "zstd" })
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			r := decode(t, p.post(t, "topic="+topic+"&key=k"+strconv.Itoa(i), []byte{byte(i)}))
			if m := readRecord(t, c, topic, r.Partition, *r.Offset); !bytes.Equal(m.Value, []byte{byte(i)}) {
				t.Errorf("record %d read back as % x", i, m.Value)
			}
		})
	}
	wg.Wait()
}

// TestAcksZeroDoesNotStallAcked: acks=0 requests are answered before the
// broker answers them; acknowledged records sent after them must still be
// answered.
func TestAcksZeroDoesNotStallAcked(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 3000 })
	for round := range 3 {
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() { decode(t, p.post(t, "topic="+topic+"&acks=0&key=z"+strconv.Itoa(i), []byte{0x01})) })
		}
		wg.Wait()
		for _, acks := range []string{"1", "-1"} {
			if a := p.post(t, "topic="+topic+"&acks="+acks, []byte{0x02}); a.code != 200 {
				t.Fatalf("round %d: acks=%s after acks=0 traffic: %d %q", round, acks, a.code, a.body)
			}
		}
	}
}

// A connection to the admin port that never sends a request (a port scan, a
// late health checker) must not hold the shutdown or make Run fail.
func TestStopWithSilentAdminConnection(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	conn, err := net.Dial("tcp", p.srv.AdminAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(50 * time.Millisecond) // the admin server has accepted it
	start := time.Now()
	if err := p.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second { // the admin listener's 1 s grace and a loaded machine's stalls
		t.Errorf("stop took %v", d)
	}
}

// kproxy reaches brokers that need TLS with a client certificate and SASL.
func TestSecureBrokers(t *testing.T) {
	c, kc := kafkatest.StartSecure(t, []kafkatest.Topic{{Name: topic, Partitions: 2}}, "SCRAM-SHA-512")
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.Kafka = kc })
	for _, acks := range []string{"1", "-1", "0"} {
		if a := p.post(t, "topic="+topic+"&key=k&acks="+acks, []byte{0x01}); a.code != 200 {
			t.Fatalf("acks=%s over TLS + SASL: %d %s", acks, a.code, a.body)
		}
	}
	waitFor(t, "3 records", func() bool { return kafkatest.Records(t, c, kc, topic) == 3 })
}
