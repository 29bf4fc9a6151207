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

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

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
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(conn, "POST /commit?topic=%s&key=k HTTP/1.1\r\nHost: kproxy\r\nTransfer-Encoding: chunked\r\n"+
		"X-Kafka-Header-In-Header: h\r\nConnection: close\r\n\r\n%x\r\n%s\r\n0\r\nX-Kafka-Header-In-Trailer: injected\r\n\r\n",
		topic, len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	r := decode(t, answer{resp.StatusCode, string(b), resp.Header})
	got := headersOf(readRecord(t, c, topic, r.Partition, *r.Offset))
	if want := []string{"in-header=h"}; !sameList(got, want) {
		t.Errorf("record headers %q, want %q: a trailer field became a record header", got, want)
	}
}
