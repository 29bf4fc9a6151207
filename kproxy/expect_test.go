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

// kproxy_requests_total counts the answers of /commit and /batch, not
// those of /health or of unknown paths (README): a body over
// max_request_size_bytes sent to another path is refused 413 like any, but
// not counted, with "Expect: 100-continue" or without.
func TestOversizedBodyToOtherPathsIsNotCountedAsRequest(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.MaxRequestSizeBytes = 1024 })
	addr := strings.TrimPrefix(p.url, "http://")
	refuse := func(path, expect string) {
		t.Helper()
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: "+addr+"\r\n"+expect+"Content-Length: 2048\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("POST %s (%q) over the limit: no answer: %v", path, expect, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("POST %s (%q) over the limit: %d, want 413", path, expect, resp.StatusCode)
		}
	}
	const counted = `kproxy_requests_total{code="413"}`
	for _, path := range []string{"/health", "/nope"} {
		for _, expect := range []string{"", "Expect: 100-continue\r\n"} {
			refuse(path, expect)
			if n := p.metric(t, counted); n != "0" {
				t.Fatalf("after POST %s (%q) over the limit: %s %s, want 0: only /commit and /batch are counted", path, expect, counted, n)
			}
		}
	}
	refuse("/commit?topic=orders", "")
	refuse("/batch", "Expect: 100-continue\r\n")
	if n := p.metric(t, counted); n != "2" {
		t.Errorf("after /commit and /batch over the limit: %s %s, want 2", counted, n)
	}
}
