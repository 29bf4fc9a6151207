package kproxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// Record headers (X-Kafka-Header-*) and ext fields (ip, ua, rid, ck) on
// three kfake brokers, read back with a consumer; p.send is in
// intake_test.go.

// headersOf is a record's headers as "key=value" lines, in order.
func headersOf(r *kgo.Record) []string {
	var out []string
	for _, h := range r.Headers {
		out = append(out, h.Key+"="+string(h.Value))
	}
	return out
}

func sameList(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}

func TestRecordHeadersReadBack(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, nil)
	body := record(t, map[string]any{"a": 1})
	for _, acks := range []string{"1", "-1"} {
		a := p.send(t, "POST", "topic="+topic+"&key=h&acks="+acks, body,
			"X-KAFKA-HEADER-Trace-ID: abc-123",
			"X-Kafka-Header-tag: first",
			"Content-Type: application/msgpack",
			"x-kafka-header-tag: second", // a name given twice is two record headers, in order
			"X-Kafka-Header-Empty:",
			"X-Kafka-Header-Text: é ☃ spaces inside ",
			"X-Kafka-Header: not a record header (no dash and name)",
			"X-Request-ID: client-7",
		)
		r := decode(t, a)
		if got := a.hdr.Get("X-Request-ID"); got != "client-7" {
			t.Errorf("acks=%s: X-Request-ID %q in the answer, want the request's echoed", acks, got)
		}
		m := readRecord(t, c, topic, r.Partition, *r.Offset)
		want := []string{"trace-id=abc-123", "tag=first", "tag=second", "empty=", "text=é ☃ spaces inside"}
		if got := headersOf(m); !sameList(got, want) {
			t.Errorf("acks=%s: record headers %q, want %q", acks, got, want)
		}
		for _, h := range m.Headers {
			if h.Key == "empty" && h.Value == nil {
				t.Errorf("an empty header value was written as null")
			}
		}
		if !bytes.Equal(m.Value, body) {
			t.Errorf("value % x, sent % x", m.Value, body)
		}
	}
	// acks=0: the record outlives its answer, its headers too.
	unique := record(t, map[string]any{"acks0": "headers"})
	if a := p.send(t, "POST", "topic="+topic+"&acks=0", unique, "X-Kafka-Header-Acks: 0"); a.code != 200 {
		t.Fatalf("acks=0: %d %q", a.code, a.body)
	}
	waitFor(t, "the acks=0 record", func() bool { return endOffsets(t, c, topic) == 3 })
	found := 0
	for _, m := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		if bytes.Equal(m.Value, unique) {
			found++
			if !sameList(headersOf(m), []string{"acks=0"}) {
				t.Errorf("acks=0 record: headers %q, want acks=0", headersOf(m))
			}
		}
	}
	if found != 1 {
		t.Errorf("the acks=0 record is in Kafka %d times", found)
	}

	// Without headers asked for, a record has none, and no X-Request-ID is
	// made up (the rid ext field is off).
	a := p.send(t, "POST", "topic="+topic, body)
	r := decode(t, a)
	if m := readRecord(t, c, topic, r.Partition, *r.Offset); len(m.Headers) != 0 {
		t.Errorf("record headers %q, none asked for", headersOf(m))
	}
	if _, ok := a.hdr["X-Request-Id"]; ok {
		t.Errorf("X-Request-ID %q in the answer without rid in ext_headers nor in the request", a.hdr.Get("X-Request-ID"))
	}
	// JSON bodies take headers too.
	a = p.send(t, "POST", "topic="+topic, []byte(`{"j":true}`), "Content-Type: application/json", "X-Kafka-Header-Source: json")
	r = decode(t, a)
	if m := readRecord(t, c, topic, r.Partition, *r.Offset); !sameList(headersOf(m), []string{"source=json"}) || string(m.Value) != `{"j":true}` {
		t.Errorf("JSON record: headers %q value %q", headersOf(m), m.Value)
	}
}

// manyHeaders are n header lines X-Kafka-Header-hNN: vNN.
func manyHeaders(n int) []string {
	var lines []string
	for i := range n {
		lines = append(lines, fmt.Sprintf("X-Kafka-Header-h%02d: v%02d", i, i))
	}
	return lines
}

func TestRecordHeaderLimits(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.MaxMessageBytes = 2048 })
	body := bytes.Repeat([]byte{0xc0}, 1) // nil, 1 byte

	a := p.send(t, "POST", "topic="+topic, body, manyHeaders(64)...)
	r := decode(t, a)
	m := readRecord(t, c, topic, r.Partition, *r.Offset)
	if len(m.Headers) != 64 || m.Headers[0].Key != "h00" || string(m.Headers[63].Value) != "v63" {
		t.Errorf("64 headers: read back %d: %q…", len(m.Headers), headersOf(m)[:min(3, len(m.Headers))])
	}
	written := int64(1)

	for _, tc := range []struct {
		name   string
		lines  []string
		code   int
		reason string
	}{
		{"65 headers", manyHeaders(65), 400, "a record takes at most 64"},
		{"10,000 headers", manyHeaders(10_000), 431, "headers too large"},
		{"no name", []string{"X-Kafka-Header-: v"}, 400, "without a record header name"},
	} {
		a := p.send(t, "POST", "topic="+topic, body, tc.lines...)
		if a.code != tc.code || !strings.Contains(a.body, tc.reason) || !oneLine(a) {
			t.Errorf("%s: %d %q, want %d with a one-line reason containing %q", tc.name, a.code, a.body, tc.code, tc.reason)
		}
	}

	// Headers count toward the record's size: body 1 + overhead 90 + the
	// header big (1 + 3 + 2 + value) fills max_message_bytes (2048)
	// exactly with a value of 1951 bytes, which is written; one byte more
	// is refused.
	value := strings.Repeat("v", 1951)
	a = p.send(t, "POST", "topic="+topic, body, "X-Kafka-Header-big: "+value)
	r = decode(t, a)
	if m := readRecord(t, c, topic, r.Partition, *r.Offset); len(m.Headers) != 1 || string(m.Headers[0].Value) != value {
		t.Errorf("record at the size limit: headers read back wrong")
	}
	written++
	a = p.send(t, "POST", "topic="+topic, body, "X-Kafka-Header-big: "+value+"v")
	if a.code != 413 || !strings.Contains(a.body, "record of 2049 bytes (headers 1958) larger than max_message_bytes (2048)") || !oneLine(a) {
		t.Errorf("record over the limit by its header: %d %q, want 413 counting the headers", a.code, a.body)
	}
	if n := endOffsets(t, c, topic); n != written {
		t.Errorf("%d records in Kafka, want the %d accepted", n, written)
	}
}

// A 1 MB header value: past the header buffer (max_header_bytes) it is 431
// before kproxy reads it; within a larger buffer it is a record over
// max_message_bytes, 413. Nothing is written either way.
func TestHugeHeaderValue(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	huge := "X-Kafka-Header-huge: " + strings.Repeat("h", 1<<20)
	for _, tc := range []struct {
		maxHeader int
		code      int
		reason    string
	}{
		{4096, 431, "request line or headers too large"},
		{2 << 20, 413, "larger than max_message_bytes (1000000)"},
	} {
		p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.MaxHeaderBytes = tc.maxHeader })
		a := p.send(t, "POST", "topic="+topic, []byte{0x01}, huge)
		if a.code != tc.code || !strings.Contains(a.body, tc.reason) {
			t.Errorf("max_header_bytes %d: 1 MB header value answered %d %q, want %d %q", tc.maxHeader, a.code, a.body, tc.code, tc.reason)
		}
		decode(t, p.send(t, "POST", "topic="+topic, []byte{0x01}, "X-Kafka-Header-small: s"))
	}
	if n := endOffsets(t, c, topic); n != 2 {
		t.Errorf("%d records in Kafka, want the 2 small ones", n)
	}
}

// Records with large headers on a topic whose max.message.bytes (3000) is
// far below max_message_bytes: sent together they form batches, which
// must fit the topic with their headers (every record 200); one record
// over the limit by its header is 413 naming the topic's limit.
func TestHeadersFitTopicMaxMessageBytes(t *testing.T) {
	const limit = 3000
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	setMaxMessageBytes(t, c, topic, limit)
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.LingerMs = 20 })
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			a := p.send(t, "POST", "topic="+topic+"&key=k"+strconv.Itoa(i), []byte{0x01}, "X-Kafka-Header-pad: "+strings.Repeat("p", 900))
			if a.code != 200 {
				t.Errorf("record %d with a 900-byte header: %d %q", i, a.code, a.body)
			}
		})
	}
	wg.Wait()
	a := p.send(t, "POST", "topic="+topic, []byte{0x01}, "X-Kafka-Header-pad: "+strings.Repeat("p", limit))
	if a.code != 413 || !strings.Contains(a.body, "max.message.bytes (3000)") {
		t.Errorf("a record over the topic's limit by its header: %d %q, want 413 naming max.message.bytes", a.code, a.body)
	}
	if n := endOffsets(t, c, topic); n != 20 {
		t.Errorf("%d records in Kafka, want 20", n)
	}
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestExtFields(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ExtHeaders = []string{"ip", "ua", "rid", "ck"} })
	body := []byte{0x01}

	// Every field from the request; X-Forwarded-For is not believed from a
	// peer outside trusted_proxies (none here).
	a := p.send(t, "POST", "topic="+topic+"&key=e", body,
		"User-Agent: tester/1.0 (ext)", "Cookie: a=1;b=two", "X-Request-ID: req-42", "cookie:  theme=dark ",
		"X-Forwarded-For: 203.0.113.9", "X-Kafka-Header-Trace: t1")
	r := decode(t, a)
	if got := a.hdr.Get("X-Request-ID"); got != "req-42" {
		t.Errorf("X-Request-ID %q in the answer, want req-42", got)
	}
	m := readRecord(t, c, topic, r.Partition, *r.Offset)
	want := []string{"trace=t1", "ip=127.0.0.1", "ua=tester/1.0 (ext)", "rid=req-42", "ck=a=1;b=two; theme=dark"}
	if got := headersOf(m); !sameList(got, want) {
		t.Errorf("record headers %q, want %q", got, want)
	}

	// No X-Request-ID: one is made, answered, and is the record's rid; no
	// User-Agent or Cookie: no ua or ck header.
	ids := map[string]bool{}
	for range 3 {
		a = p.send(t, "POST", "topic="+topic, body)
		r = decode(t, a)
		id := a.hdr.Get("X-Request-ID")
		if !uuidV4.MatchString(id) || ids[id] {
			t.Fatalf("generated X-Request-ID %q: not a fresh version 4 UUID", id)
		}
		ids[id] = true
		m = readRecord(t, c, topic, r.Partition, *r.Offset)
		if got := headersOf(m); !sameList(got, []string{"ip=127.0.0.1", "rid=" + id}) {
			t.Errorf("record headers %q, want ip and the answered rid %s", got, id)
		}
	}

	// Errors carry the X-Request-ID too, given or made.
	for _, tc := range []struct {
		method, query string
		lines         []string
		code          int
	}{
		{"POST", "topic=bad%2Fname", []string{"X-Request-ID: err-1"}, 400},
		{"POST", "topic=" + topic, []string{"X-Request-ID: err-2", "X-Kafka-Header-Rid: forged"}, 400},
		{"POST", "topic=" + topic, []string{"X-Kafka-Header-IP: 10.9.9.9"}, 400},
		{"GET", "topic=" + topic, nil, 405},
		{"POST", "topic=no_such_topic", nil, 404},
	} {
		a := p.send(t, tc.method, tc.query, body, tc.lines...)
		id := a.hdr.Get("X-Request-ID")
		wantID := ""
		for _, l := range tc.lines {
			if v, ok := strings.CutPrefix(l, "X-Request-ID: "); ok {
				wantID = v
			}
		}
		if a.code != tc.code || (wantID != "" && id != wantID) || (wantID == "" && !uuidV4.MatchString(id)) {
			t.Errorf("%s %s %q: %d X-Request-ID %q (%q), want %d with the request's id or a new one", tc.method, tc.query, tc.lines, a.code, id, a.body, tc.code)
		}
		if tc.code == 400 && strings.Contains(strings.Join(tc.lines, ""), "X-Kafka-Header-") && !strings.Contains(a.body, "is set by kproxy (ext_headers)") {
			t.Errorf("forged ext field %q: %q, want it refused as set by kproxy", tc.lines, a.body)
		}
	}

	// Behind trusted proxies the client is the right-most address of
	// X-Forwarded-For that is not a trusted proxy: what the client wrote
	// further left is not believed.
	p2 := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.ExtHeaders = []string{"ip"}
		cfg.TrustedProxies = []string{"127.0.0.1", "10.0.0.0/8"}
	})
	for _, tc := range []struct {
		lines []string
		ip    string
	}{
		{[]string{"X-Forwarded-For: 198.51.100.7, 203.0.113.9, 10.0.0.1"}, "203.0.113.9"},
		{[]string{"X-Forwarded-For: 198.51.100.7", "X-Forwarded-For: 2001:db8::5, 10.1.1.1"}, "2001:db8::5"},
		{[]string{"X-Forwarded-For: 10.0.0.2, 10.0.0.1"}, "10.0.0.2"},
		{[]string{"X-Forwarded-For: not-an-address, 10.0.0.1"}, "10.0.0.1"},
		{nil, "127.0.0.1"},
	} {
		a := p2.send(t, "POST", "topic="+topic, body, tc.lines...)
		r := decode(t, a)
		if m := readRecord(t, c, topic, r.Partition, *r.Offset); !sameList(headersOf(m), []string{"ip=" + tc.ip}) {
			t.Errorf("%q: record headers %q, want ip=%s", tc.lines, headersOf(m), tc.ip)
		}
	}
}

func TestExtHeadersConfigErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kproxy.yaml")
	os.WriteFile(file, []byte(`broker_hosts: [h:1]
ext_headers: [ip, referer, ip]
trusted_proxies: [10.0.0.0/8, 10.0.0.0/33, proxy.local]
max_header_bytes: 100
`), 0o600)
	_, err := kproxy.LoadConfig(file)
	for _, want := range []string{
		file + `: ext_headers[1]: must be one of ip, ua, rid, ck, got "referer"`,
		file + `: ext_headers[2]: names an ext field twice, got "ip"`,
		file + `: trusted_proxies[1]: must be an IP address or a CIDR like 10.0.0.0/8, got "10.0.0.0/33"`,
		file + `: trusted_proxies[2]: must be an IP address or a CIDR like 10.0.0.0/8, got "proxy.local"`,
		file + `: max_header_bytes: must be 1024..104857600 (100 MiB, the largest record batch), got 100`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "trusted_proxies[0]") {
		t.Errorf("a good CIDR refused: %v", err)
	}
}

// TestBatchHeaderNameNotUTF8: a record header's name is a string — Kafka's
// record format, gRPC (which refuses one that is not UTF-8) and a JSON
// /batch (whose text is UTF-8) agree — so a msgpack /batch record whose
// header name is not UTF-8 is refused (400, its index), nothing written,
// not written with a name a Java consumer reads as something else.
func TestBatchHeaderNameNotUTF8(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, nil)
	// [{"value":1}, {"value":1,"headers":{"\xff\xfe":"x"}}], names as str
	// and as bin.
	for _, name := range [][]byte{{0xa2, 0xff, 0xfe}, {0xc4, 0x02, 0xff, 0xfe}, {0xa3, 'a', 0xc3, 0x28}} {
		body := []byte{0x92, 0x81, 0xa5, 'v', 'a', 'l', 'u', 'e', 0x01,
			0x82, 0xa5, 'v', 'a', 'l', 'u', 'e', 0x01, 0xa7, 'h', 'e', 'a', 'd', 'e', 'r', 's', 0x81}
		body = append(append(body, name...), 0xa1, 'x')
		a := p.postBatch(t, "topic="+topic, "", body)
		if a.code != 400 || a.index() != 1 || !strings.Contains(a.Error, "UTF-8") {
			t.Errorf("header name %q: %v, want 400 for record 1 naming UTF-8", name, a)
		}
	}
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records written", n)
	}
}

// TestBatchKafkaHeaderFieldsNotDropped: a request header
// X-Kafka-Header-<name> asks for a record header (DESIGN, Record
// headers). /batch records carry their own ("headers"): a /batch request
// with one is refused (400, nothing written), not written without the
// header its client asked for.
func TestBatchKafkaHeaderFieldsNotDropped(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, nil)
	body := []byte(`[{"key":"k","value":1}]`)
	raw := fmt.Sprintf("POST /batch?topic=%s HTTP/1.1\r\nHost: kproxy\r\nContent-Type: application/json\r\n"+
		"X-Kafka-Header-Trace-Id: abc\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", topic, len(body), body)
	code, answer := rawRequest(t, p, raw)
	if code != 400 || !strings.Contains(answer, "X-Kafka-Header-") {
		t.Errorf("/batch with X-Kafka-Header-Trace-Id: %d %q, want 400 naming X-Kafka-Header-", code, answer)
	}
	if n := endOffsets(t, c, topic); n != 0 {
		for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
			t.Logf("written: %q headers %q", r.Value, r.Headers)
		}
		t.Errorf("%d records written without the header asked for", n)
	}
}

// rawRequest writes raw to p's HTTP port and returns the answer's status
// and body.
func rawRequest(t *testing.T, p *proxy, raw string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := conn.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
