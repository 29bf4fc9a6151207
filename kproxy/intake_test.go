package kproxy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The tests in this file attack the intake of DESIGN.md beyond one msgpack
// record (JSON bodies; headers_test.go: record headers and ext fields) on
// three kfake brokers, reading what was written back with a consumer.

// send posts body with the given header lines ("Name: value", in this
// order and spelling) over a connection of its own, as a client that is
// not Go's would: Go's client sorts and canonicalizes header names.
func (p *proxy) send(t testing.TB, method, query string, body []byte, lines ...string) answer {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s /commit?%s HTTP/1.1\r\nHost: kproxy\r\nContent-Length: %d\r\n", method, query, len(body))
	for _, l := range lines {
		req.WriteString(l + "\r\n")
	}
	req.WriteString("Connection: close\r\n\r\n")
	req.Write(body)
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	// Written while the answer is read: kproxy answers a request it
	// refuses before reading all of it (431).
	go conn.Write(req.Bytes())
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, query, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

// oneLine reports whether an answer's body is one line of text.
func oneLine(a answer) bool {
	return strings.Count(a.body, "\n") == 1 && strings.HasSuffix(a.body, "\n")
}

func TestJSONBodies(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, nil)
	good := []struct{ ctype, body string }{
		{"application/json", `{"method":"TestUserName","uid":7,"tags":["a","b"],"nested":{"x":[1.5e3,null,true,-0]}}`},
		{"application/json; charset=utf-8", `"é 日本 😀 \u00e9 \"quoted\""`},
		{"Application/JSON ; charset=UTF-8", `[1, 2, 3]`},
		// White space around the value is part of the text: written as sent.
		{"application/json", " \r\n{\"kept\" : \"as sent\"}\t\n"},
		{"application/json", `0`},
		// Deep nesting costs the scanner a bit per level, and kproxy never
		// decodes values: accepted, as in msgpack and /batch values.
		{"application/json", strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)},
	}
	for i, tc := range good {
		a := p.send(t, "POST", "topic="+topic+"&key=j"+strconv.Itoa(i), []byte(tc.body), "Content-Type: "+tc.ctype)
		r := decode(t, a)
		if m := readRecord(t, c, topic, r.Partition, *r.Offset); string(m.Value) != tc.body {
			t.Errorf("%.40q sent as %s: written as %.40q", tc.body, tc.ctype, m.Value)
		}
	}
	bad := []struct {
		name, ctype, body, reason string
	}{
		{"empty", "application/json", "", "empty body; send one JSON value"},
		{"white space only", "application/json", " \r\n", "only white space"},
		{"trailing garbage", "application/json", `{"a":1}x`, "data after the JSON value at offset 7"},
		{"two values", "application/json", `{"a":1} {"b":2}`, "data after the JSON value at offset 8"},
		{"a million brackets", "application/json", strings.Repeat("[", 1_000_000), "unexpected end of JSON input at offset 1000000"},
		{"truncated", "application/json", `{"a":[1,2`, "unexpected end of JSON input"},
		{"invalid UTF-8", "application/json", "\"\xff\"", "invalid UTF-8"},
		{"msgpack sent as JSON", "application/json", "\x81\xa1a\x01", "body is not one JSON value"},
		// msgpack stays the default: JSON text without the JSON type is
		// not one msgpack value ('{' is a msgpack integer, then bytes).
		{"JSON without its type", "", `{"a":1}`, "body is not one msgpack value"},
		{"JSON as text/plain", "text/plain", `{"a":1}`, "body is not one msgpack value"},
	}
	for _, tc := range bad {
		var lines []string
		if tc.ctype != "" {
			lines = append(lines, "Content-Type: "+tc.ctype)
		}
		a := p.send(t, "POST", "topic="+topic, []byte(tc.body), lines...)
		if a.code != 400 || !strings.Contains(a.body, tc.reason) || !oneLine(a) {
			t.Errorf("%s: %d %.200q, want 400 with one line containing %q", tc.name, a.code, a.body, tc.reason)
		}
	}
	if n := endOffsets(t, c, topic); n != int64(len(good)) {
		t.Errorf("%d records in Kafka, want the %d good ones", n, len(good))
	}
	json, msgpack := len(good)+len(bad)-2, 2
	if got := p.metric(t, `kproxy_request_bodies_total{format="json"}`); got != strconv.Itoa(json) {
		t.Errorf(`kproxy_request_bodies_total{format="json"} = %s, want %d`, got, json)
	}
	if got := p.metric(t, `kproxy_request_bodies_total{format="msgpack"}`); got != strconv.Itoa(msgpack) {
		t.Errorf(`kproxy_request_bodies_total{format="msgpack"} = %s, want %d`, got, msgpack)
	}
}

// TestMultipartTypeBodyIsMsgpack: a Content-Type other than
// application/json means a msgpack body (README, Body formats), whatever
// it says: a msgpack record posted as multipart/form-data (a client
// library's default type) is written byte for byte, to /commit and in a
// /batch, and a body that is a multipart form is one msgpack value or a
// 400 saying it is not — never read as a form and encoded again.
func TestMultipartTypeBodyIsMsgpack(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, nil)
	value := mp(t, map[string]any{"uid": 42, "name": "x"})
	a := p.send(t, "POST", "topic="+topic+"&key=k", value, "Content-Type: multipart/form-data; boundary=xyz")
	if a.code != 200 {
		t.Fatalf("msgpack record typed multipart/form-data: %d %q, want 200", a.code, a.body)
	}
	r := decode(t, a)
	if m := readRecord(t, c, topic, r.Partition, *r.Offset); !bytes.Equal(m.Value, value) {
		t.Errorf("written as %q, sent %q", m.Value, value)
	}

	ab := p.postBatch(t, "topic="+topic, "multipart/form-data; boundary=xyz", mpBatch(t, []brec{{key: "k", value: value}}))
	if ab.code != 200 {
		t.Errorf("msgpack /batch typed multipart/form-data: %v, want 200", ab)
	}

	form := "--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--xyz--\r\n"
	a = p.send(t, "POST", "topic="+topic, []byte(form), "Content-Type: multipart/form-data; boundary=xyz")
	if a.code != 400 || !strings.Contains(a.body, "body is not one msgpack value") || !oneLine(a) {
		t.Errorf("a multipart form: %d %q, want 400: not one msgpack value", a.code, a.body)
	}
	if n := endOffsets(t, c, topic); n != 2 {
		t.Errorf("%d records in Kafka, want 2", n)
	}
}

// TestMalformedHeaderAnsweredWithReason: a request fasthttp cannot read —
// a control character in a header's value or name, a header name that is
// not a token — is answered 400 with one line saying what is wrong
// (README: every non-200 answer says why), not "malformed request" alone.
func TestMalformedHeaderAnsweredWithReason(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, nil)
	for _, tc := range []struct{ line, reason string }{
		{"X-Kafka-Header-A: x\x01y", "invalid header value"},
		{"X-Kafka-Header-C: a\x00b", "invalid header value"},
		{"X-Kafka-Header-\xff: v", "malformed mime header line"},
		{"X-Kafka-Header-a\x01: v", "malformed mime header line"},
	} {
		a := p.send(t, "POST", "topic="+topic, []byte{1}, tc.line)
		if a.code != 400 || !strings.Contains(a.body, tc.reason) || !oneLine(a) {
			t.Errorf("%q: %d %q, want 400 with one line saying %q", tc.line, a.code, a.body, tc.reason)
		}
	}
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records written", n)
	}
}
