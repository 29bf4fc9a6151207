package kproxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// A client that sends "Expect: 100-continue" (curl does for bodies over
// 1 KiB) waits for the server's word before sending the body. A body over
// max_request_size_bytes is refused from its Content-Length, so the word is
// 413 at once (RFC 9110 10.1.1: a status that the header fields determine is
// sent instead of 100) — not "100 Continue", which tells the client to send
// a body kproxy then refuses, closing the connection under a client still
// uploading. A body within the limit still gets 100 and is written.
func TestExpectContinueOverMaxRequestSizeIs413NotContinue(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.MaxRequestSizeBytes = 1024 })
	addr := strings.TrimPrefix(p.url, "http://")
	send := func(size int) (*bufio.Reader, net.Conn) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		head := "POST /commit?topic=orders HTTP/1.1\r\nHost: " + addr + "\r\nExpect: 100-continue\r\n" +
			"Content-Length: " + strconv.Itoa(size) + "\r\n\r\n"
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		return bufio.NewReader(conn), conn
	}

	br, _ := send(2048)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("over the limit: no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !strings.Contains(string(body), "max_request_size_bytes") {
		t.Errorf("over the limit, first answer: %d %q, want 413 naming max_request_size_bytes before the body is sent", resp.StatusCode, body)
	}

	// Within the limit: 100, then the body (a msgpack str of 997 bytes), 200.
	value := append([]byte{0xda, 0x03, 0xe5}, []byte(strings.Repeat("a", 997))...)
	br, conn := send(len(value))
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("within the limit: no answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 100 {
		t.Fatalf("within the limit, first answer: %d, want 100 Continue", resp.StatusCode)
	}
	if _, err := conn.Write(value); err != nil {
		t.Fatal(err)
	}
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatalf("within the limit, after the body: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("within the limit: %d %q, want 200", resp.StatusCode, body)
	}
	if n := endOffsets(t, c, "orders"); n != 1 {
		t.Errorf("%d records written, want the one answered 200", n)
	}
}
