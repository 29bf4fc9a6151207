package kproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// commitRaw writes request, a /commit to p as it stands (its headers and
// body as given), and returns the record headers of the record it wrote.
func commitRaw(t *testing.T, p *proxy, c *kfake.Cluster, request string) []string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	r := decode(t, answer{resp.StatusCode, string(b), resp.Header})
	return headersOf(readRecord(t, c, topic, r.Partition, *r.Offset))
}

// TestTrailerIsNotARecordHeader: README ("Record headers"): "Each
// request header X-Kafka-Header-<name>: <value> becomes a record header";
// RFC 9110 6.5.1: a trailer field is not merged into the header section.
// A chunked /commit whose trailer section carried X-Kafka-Header-* had
// those trailer fields written as record headers, past whatever a proxy
// in front allows in the header section and outside max_header_bytes.
func TestTrailerIsNotARecordHeader(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	body := record(t, map[string]any{"a": 1})
	got := commitRaw(t, p, c, fmt.Sprintf("POST /commit?topic=%s&key=k HTTP/1.1\r\nHost: kproxy\r\nTransfer-Encoding: chunked\r\n"+
		"X-Kafka-Header-In-Header: h\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\nX-Kafka-Header-In-Trailer: injected\r\n\r\n",
		topic, len(body), body))
	if want := []string{"in-header=h"}; !sameList(got, want) {
		t.Errorf("record headers %q, want %q: a trailer field became a record header", got, want)
	}
}

// TestChunkedObsFoldHeaderValue: the same X-Kafka-Header-* field,
// folded onto a continuation line (obs-fold, which fasthttp accepts and
// joins with a space), became record header "v1 v2" with a
// Content-Length body but "v1" with a chunked one: requestHeaders read
// raw lines, and headerLines dropped the continuation line.
func TestChunkedObsFoldHeaderValue(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	body := record(t, map[string]any{"a": 1})
	head := fmt.Sprintf("POST /commit?topic=%s&key=k HTTP/1.1\r\nHost: kproxy\r\nX-Kafka-Header-Folded: v1\r\n v2\r\nConnection: close\r\n", topic)
	plain := commitRaw(t, p, c, fmt.Sprintf("%sContent-Length: %d\r\n\r\n%s", head, len(body), body))
	chunked := commitRaw(t, p, c, fmt.Sprintf("%sTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", head, len(body), body))
	if !sameList(plain, chunked) {
		t.Errorf("record headers of the same request: %q with Content-Length, %q chunked", plain, chunked)
	}
}

// TestBatchTrailerIsNoHeader: README ("Batches"): "a /batch request with
// an X-Kafka-Header-* header is refused (400)", and ("Record headers")
// "Only the header section counts". A chunked /batch whose trailer, not
// its header section, carried X-Kafka-Header-* was refused 400 as if it
// were a header (fasthttp lists trailer fields with the headers), where
// the same trailer on /commit is ignored: the batch must be written.
func TestBatchTrailerIsNoHeader(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	body := jsonBatch([]brec{{key: "k", value: []byte(`{"a":1}`)}})
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(conn, "POST /batch?topic=%s HTTP/1.1\r\nHost: kproxy\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"+
		"Connection: close\r\n\r\n%x\r\n%s\r\n0\r\nX-Kafka-Header-In-Trailer: injected\r\n\r\n", topic, len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("chunked /batch with X-Kafka-Header-* in its trailer only: %d %s, want 200 (a trailer is no header)", resp.StatusCode, b)
	}
	if got := headersOf(readRecord(t, c, topic, 0, 0)); len(got) != 0 {
		t.Errorf("record headers %q, want none: a trailer field became a record header", got)
	}
}

// TestChunkedObsFoldEdgesAsFasthttp: a field folded with its value on
// the continuation line only, or with a continuation line of white space,
// must give the same value whether the body is chunked (kproxy reads the
// raw header lines, to leave the trailer out) or has a Content-Length
// (fasthttp's parse): the rid took a leading space, and lost a trailing
// one, only when chunked.
func TestChunkedObsFoldEdgesAsFasthttp(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ExtHeaders = []string{"rid"} })
	body := record(t, map[string]any{"a": 1})
	for _, field := range []string{
		"X-Request-ID:\r\n abc\r\n", "X-Request-ID: abc\r\n \r\n", "X-Request-ID: a\r\n\t \r\n b \r\n",
		"X-Request-ID: r\r\nX-Kafka-Header-F:\r\n v\r\n", "X-Request-ID: r\r\nX-Kafka-Header-F: v\r\n \r\n",
	} {
		head := fmt.Sprintf("POST /commit?topic=%s&key=k HTTP/1.1\r\nHost: kproxy\r\n%sConnection: close\r\n", topic, field)
		plain := commitRaw(t, p, c, fmt.Sprintf("%sContent-Length: %d\r\n\r\n%s", head, len(body), body))
		chunked := commitRaw(t, p, c, fmt.Sprintf("%sTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", head, len(body), body))
		if !sameList(plain, chunked) {
			t.Errorf("field %q: record headers %q with Content-Length, %q chunked", field, plain, chunked)
		}
	}
}

// TestFoldedCookieWholeInCk: the ck ext field carries the request's
// Cookie header as received. One folded onto a continuation line
// (obs-fold, which fasthttp accepts and joins with a space) was cut at the
// fold — "a=1;" for "a=1;\r\n b=2" — or left out when its value was on the
// continuation line only, the request answered 200: written otherwise than
// sent. (A folded line naming Transfer-Encoding with a Content-Length
// stays refused, 400: fasthttp joins it to the field before it, but a
// proxy in front that takes it for a field of its own would frame the
// body by it — TestAmbiguousLength's concern.)
func TestFoldedCookieWholeInCk(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ExtHeaders = []string{"ck"} })
	body := record(t, map[string]any{"a": 1})
	for _, tc := range []struct{ cookie, want string }{
		{"Cookie: a=1;\r\n b=2\r\n", "ck=a=1; b=2"},
		{"Cookie:\r\n sid=abc\r\n", "ck=sid=abc"},
	} {
		got := commitRaw(t, p, c, fmt.Sprintf("POST /commit?topic=%s&key=k HTTP/1.1\r\nHost: kproxy\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			topic, tc.cookie, len(body), body))
		if !sameList(got, []string{tc.want}) {
			t.Errorf("%q: record headers %q, want %q", tc.cookie, got, tc.want)
		}
	}
}
