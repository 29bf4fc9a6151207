package kproxy_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// kproxy writes a body byte-for-byte and does not decode content codings.
// A body sent compressed (Content-Encoding: gzip, as some clients do for
// large JSON) is refused 415 with a reason naming the coding, on /commit
// and /batch, in either format — not a 400 saying the (compressed) bytes
// are not one msgpack or JSON value, which sends its client looking for a
// fault in a body that has none. Nothing is written; Content-Encoding:
// identity is no coding and is written as usual.
func TestCompressedBodyRefusedNamingItsCoding(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	p := startProxy(t, c, nil)
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	post := func(path, ctype, coding string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", p.url+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		req.Header.Set("Content-Encoding", coding)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		answer, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(answer)
	}
	for _, tc := range []struct {
		path, ctype string
		body        []byte
	}{
		{"/commit?topic=orders", "application/json", []byte(`{"a":1}`)},
		{"/commit?topic=orders", "application/msgpack", mp(t, map[string]any{"a": 1})},
		{"/batch?topic=orders", "application/json", []byte(`[{"value":{"a":1}}]`)},
		{"/batch?topic=orders", "application/msgpack", mp(t, []any{map[string]any{"value": 1}})},
	} {
		// snappy, lz4, bzip2 and xz are not in IANA's registry, yet clients
		// (log shippers) send them.
		for _, coding := range []string{"gzip", "GZIP", "br", "snappy", "x-snappy-framed", "lz4", "bzip2", "xz"} {
			code, answer := post(tc.path, tc.ctype, coding, gz(tc.body))
			if code != 415 || !strings.Contains(answer, "Content-Encoding") || !strings.Contains(answer, coding) {
				t.Errorf("POST %s, %s, Content-Encoding %s: %d %q, want 415 naming Content-Encoding %s", tc.path, tc.ctype, coding, code, answer, coding)
			}
		}
		if n := endOffsets(t, c, "orders"); n != 0 {
			t.Fatalf("%d records written from compressed bodies, want none", n)
		}
	}
	for _, path := range []string{"/commit?topic=orders", "/batch?topic=orders"} {
		body := []byte(`1`)
		if strings.HasPrefix(path, "/batch") {
			body = []byte(`[{"value":1}]`)
		}
		if code, answer := post(path, "application/json", "identity", body); code != 200 {
			t.Errorf("POST %s, Content-Encoding identity: %d %q, want 200", path, code, answer)
		}
	}
}

// A Content-Encoding that names no content coding — "UTF-8", the charset,
// which Java clients send from Apache HttpClient's
// entity.setContentEncoding("UTF-8"), or "binary" — says nothing about the
// body: kproxy never decoded one and wrote such a body as sent (200), as it
// still does. Only the codings that compress or encrypt a body (gzip, br,
// deflate, zstd, …) are refused 415.
func TestContentEncodingNamingNoCodingIsWrittenAsBefore(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	p := startProxy(t, c, nil)
	written := 0
	for _, coding := range []string{"UTF-8", "utf8", "binary"} {
		for _, tc := range []struct{ path, ctype, body string }{
			{"/commit?topic=orders", "application/json; charset=UTF-8", `{"a":1}`},
			{"/commit?topic=orders", "application/msgpack", string(mp(t, map[string]any{"a": 1}))},
			{"/batch?topic=orders", "application/json", `[{"value":{"a":1}}]`},
		} {
			req, _ := http.NewRequest("POST", p.url+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			req.Header.Set("Content-Encoding", coding)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("POST %s, %s, Content-Encoding %s: %d %q, want 200 as before", tc.path, tc.ctype, coding, resp.StatusCode, answer)
				continue
			}
			written++
		}
	}
	if n := endOffsets(t, c, "orders"); n != int64(written) {
		t.Errorf("%d records in Kafka, want the %d answered 200", n, written)
	}
}
