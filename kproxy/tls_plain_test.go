package kproxy_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// A client that speaks plain HTTP to the port with tls_cert_file set (an
// http:// URL where https:// was meant) gets a 400 saying why, as every
// refusal does (and as Go's own HTTPS server answers it), not a connection
// closed without a word that it can only report as "empty reply"; nothing
// is written.
func TestPlainHTTPToTLSPortIsAnsweredWhy(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	certs := testcert.New(t)
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey })
	addr := strings.TrimPrefix(p.url, "http://")
	for _, method := range []string{"POST", "GET"} {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		req := method + " /commit?topic=orders HTTP/1.1\r\nHost: " + addr + "\r\nContent-Length: 1\r\n\r\n\x01"
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatalf("%s over plain HTTP to the TLS port: no answer: %v", method, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(body), "HTTPS") || strings.Count(string(body), "\n") != 1 {
			t.Errorf("%s over plain HTTP to the TLS port: %d %q, want 400 with a line saying the port speaks HTTPS", method, resp.StatusCode, body)
		}
	}
	if n := endOffsets(t, c, "orders"); n != 0 {
		t.Errorf("%d records written, want none", n)
	}
}

// A plain HTTP request with a body larger than the sockets' buffers (a
// client sending a batch to an http:// URL where https:// was meant) gets
// the 400 saying why too, not a connection reset under its upload: kproxy
// reads the 5 bytes a TLS record header takes, and closing with the rest
// unread resets the connection, and a client still sending (curl, Go's
// client at times) reports the reset, not the answer.
func TestPlainHTTPWithLargeBodyToTLSPortIsAnsweredWhy(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	certs := testcert.New(t)
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey })
	addr := strings.TrimPrefix(p.url, "http://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	body := make([]byte, 8<<20) // within max_request_size_bytes (10 MiB)
	head := "POST /commit?topic=orders HTTP/1.1\r\nHost: " + addr + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(body); err != nil {
		t.Fatalf("8 MiB over plain HTTP to the TLS port: the upload failed, no answer read: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("8 MiB over plain HTTP to the TLS port: no answer: %v", err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(answer), "HTTPS") {
		t.Errorf("8 MiB over plain HTTP to the TLS port: %d %q, want 400 saying the port speaks HTTPS", resp.StatusCode, answer)
	}
	if n := endOffsets(t, c, "orders"); n != 0 {
		t.Errorf("%d records written, want none", n)
	}
}

// A TLS handshake that fails (a client that does not trust kproxy's
// certificate) is not a request: nothing can be answered over it, and
// kproxy_requests_total, the answers of /commit and /batch, does not count
// it, with release_idle_buffers false as with true. It counted a 400
// "malformed request" that no one received.
func TestFailedTLSHandshakeIsNotCountedAsRequest(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	certs := testcert.New(t)
	for _, release := range []bool{false, true} {
		p := startProxy(t, c, func(cfg *kproxy.Config) {
			cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
			cfg.ReleaseIdleBuffers = release
		})
		raw, err := net.DialTimeout("tcp", strings.TrimPrefix(p.url, "http://"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tls.Client(raw, &tls.Config{ServerName: "127.0.0.1"}).Handshake(); err == nil {
			t.Fatal("handshake with a certificate the client does not trust succeeded")
		}
		// kproxy is done with the connection when it closes it.
		if _, err := io.Copy(io.Discard, raw); err != nil {
			t.Fatalf("release_idle_buffers %v: connection not closed after the failed handshake: %v", release, err)
		}
		raw.Close()
		if n := p.metric(t, `kproxy_requests_total{code="400"}`); n != "0" {
			t.Errorf("release_idle_buffers %v: a failed TLS handshake counted as %s answers 400, want 0", release, n)
		}
	}
}
