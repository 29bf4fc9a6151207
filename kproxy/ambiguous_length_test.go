package kproxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// A request with both Content-Length and Transfer-Encoding has two
// lengths: a proxy in front of kproxy that goes by Content-Length and
// kproxy, which goes by the chunks, read different requests from the same
// bytes, and the bytes one of them takes for the next request were never
// seen by the other (request smuggling: past the proxy's checks, with an
// X-Forwarded-For the client wrote believed from a trusted proxy). Such a
// request "ought to be handled as an error" and the connection closed
// (RFC 9112 6.1, 6.3): kproxy answers 400 with its reason, on /commit and
// /batch, writes nothing, and reads nothing more from the connection.
func TestContentLengthWithTransferEncodingRefused(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	p := startProxy(t, c, nil)
	addr := strings.TrimPrefix(p.url, "http://")
	const next = "POST /commit?topic=orders HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n\x03"
	for _, first := range []string{
		// A proxy going by Content-Length forwards 4 bytes of body, then
		// the rest as a request of its own; kproxy reads the chunks.
		"POST /commit?topic=orders HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n\x02\r\n0\r\n\r\n",
		"POST /batch?topic=orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\nContent-Type: application/json\r\n\r\nd\r\n[{\"value\":1}]\r\n0\r\n\r\n",
		// An empty chunked body, the next request in what the proxy took
		// for the body: fasthttp then gives the length as 0 and drops
		// Transfer-Encoding, which the check took for no Transfer-Encoding
		// (the request refused for its empty body, the next one written).
		"POST /commit?topic=orders HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST /batch?topic=orders HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		// Transfer-Encoding: identity, which fasthttp ignores, going by
		// Content-Length: a proxy in front that reads the body to the
		// connection's end sends the next request as this one's body.
		"POST /commit?topic=orders HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: identity\r\n\r\n\x02",
		"POST /batch?topic=orders HTTP/1.1\r\nHost: x\r\nTRANSFER-ENCODING: identity\r\nContent-Length: 13\r\nContent-Type: application/json\r\n\r\n[{\"value\":1}]",
		// Transfer-Encoding on a line folded onto the field before it
		// (obs-fold): fasthttp joins it to X-A and goes by
		// Content-Length; a proxy in front that takes it for a field of
		// its own goes by the chunks.
		"POST /commit?topic=orders HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n1\r\n\x02\r\n0\r\n\r\n",
	} {
		resp, answer, br, conn := sendRaw(t, addr, first+next)
		if resp.StatusCode != 400 || !strings.Contains(string(answer), "Transfer-Encoding") {
			t.Errorf("%.40q: %d %q, want 400 naming Content-Length and Transfer-Encoding", first, resp.StatusCode, answer)
		}
		if resp2, err := http.ReadResponse(br, nil); err == nil {
			b, _ := io.ReadAll(resp2.Body)
			t.Errorf("%.40q: the request after it on the connection was answered %d %q, want the connection closed", first, resp2.StatusCode, b)
		}
		conn.Close()
	}
	if n := endOffsets(t, c, "orders"); n != 0 {
		t.Errorf("%d records written, want none", n)
	}
}

// sendRaw writes req, raw bytes, on a new connection to addr (5 s for all
// of it) and reads the first answer; br reads the connection on, conn is
// closed when the test ends.
func sendRaw(t *testing.T, addr, req string) (resp *http.Response, body []byte, br *bufio.Reader, conn net.Conn) {
	t.Helper()
	conn = dialRaw(t, addr, 5*time.Second)
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br = bufio.NewReader(conn)
	var err error
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatalf("%.40q: no answer: %v", req, err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body, br, conn
}

// dialRaw opens a connection to addr (within 5 s), closed when the test
// ends, all of whose reads and writes must end within limit.
func dialRaw(t *testing.T, addr string, limit time.Duration) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(limit))
	return conn
}
