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

// TestChunkedObsFoldHeaderValue: the same X-Kafka-Header-* field,
// folded onto a continuation line (obs-fold, which fasthttp accepts and
// joins with a space), became record header "v1 v2" with a
// Content-Length body but "v1" with a chunked one: requestHeaders read
// raw lines, and headerLines dropped the continuation line.
func TestChunkedObsFoldHeaderValue(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	body := record(t, map[string]any{"a": 1})
	send := func(chunked bool) []string {
		conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(15 * time.Second))
		head := fmt.Sprintf("POST /commit?topic=%s&key=k HTTP/1.1\r\nHost: kproxy\r\nX-Kafka-Header-Folded: v1\r\n v2\r\nConnection: close\r\n", topic)
		if chunked {
			fmt.Fprintf(conn, "%sTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", head, len(body), body)
		} else {
			fmt.Fprintf(conn, "%sContent-Length: %d\r\n\r\n%s", head, len(body), body)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		r := decode(t, answer{resp.StatusCode, string(b), resp.Header})
		return headersOf(readRecord(t, c, topic, r.Partition, *r.Offset))
	}
	plain, chunked := send(false), send(true)
	if !sameList(plain, chunked) {
		t.Errorf("record headers of the same request: %q with Content-Length, %q chunked", plain, chunked)
	}
}
