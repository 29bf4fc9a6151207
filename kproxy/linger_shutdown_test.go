package kproxy_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// closedWithin writes a byte on raw every 20 ms until a write fails (kproxy
// closed its end: the first write after that is answered by a reset) or d
// has passed; it reports whether the connection was closed.
func closedWithin(raw net.Conn, d time.Duration) bool {
	for until := time.Now().Add(d); time.Now().Before(until); {
		raw.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := raw.Write([]byte{0}); err != nil {
			return true
		}
		time.Sleep(20 * time.Millisecond) // the client's pace, not a wait for an event
	}
	return false
}

// A connection refused mid-upload (413) lingers to read and drop the rest
// of the upload, at most read_timeout_ms; but not past kproxy's stop: once
// Run has returned, kproxy holds none of its connections open (nor the
// goroutine that reads one), over plain HTTP with release_idle_buffers true
// or false and over TLS.
func TestRefusedConnectionDoesNotLingerPastRun(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	certs := testcert.New(t)
	for _, mode := range []string{"release_idle_buffers true", "release_idle_buffers false", "tls"} {
		p := startProxy(t, c, func(cfg *kproxy.Config) {
			cfg.MaxRequestSizeBytes = 1 << 20
			cfg.ReadTimeoutMs = 20_000 // the linger's bound, far past the test's
			cfg.ReleaseIdleBuffers = mode != "release_idle_buffers false"
			if mode == "tls" {
				cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
			}
		})
		addr := strings.TrimPrefix(p.url, "http://")
		raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		conn := raw
		if mode == "tls" {
			conn = tls.Client(raw, &tls.Config{RootCAs: certs.CA, ServerName: "127.0.0.1"})
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		head := "POST /commit?topic=orders HTTP/1.1\r\nHost: " + addr + "\r\nContent-Length: 104857600\r\n\r\n"
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		conn.Write(make([]byte, 64<<10)) // then nothing more, and no close
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: no answer: %v", mode, err)
		}
		answer, err := io.ReadAll(resp.Body) // to the end of the stream: kproxy shut its side
		if resp.StatusCode != 413 || err != nil {
			t.Fatalf("%s: %d %q (%v), want 413 and the end of the stream", mode, resp.StatusCode, answer, err)
		}
		if closedWithin(raw, 200*time.Millisecond) {
			t.Fatalf("%s: the refused connection was closed at once, want it lingering", mode)
		}

		if err := p.stop(); err != nil {
			t.Fatalf("%s: Run: %v", mode, err)
		}
		if !closedWithin(raw, 3*time.Second) {
			t.Errorf("%s: the refused connection still open 3s after Run returned, want closed when kproxy stops", mode)
		}
	}
}

// A plain HTTP request on the HTTPS port is answered 400 and its
// connection lingers (read_timeout_ms) to drop the rest of the request.
// That connection has no request in flight: kproxy's stop does not wait for
// it. Run returns within shutdown_timeout_ms, without the shutdown's
// warning that requests were still in flight (and the Kafka clients closed
// without their flush).
func TestLingeringPlainAnswerDoesNotHoldShutdown(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	certs := testcert.New(t)
	for _, release := range []bool{true, false} {
		var logs runtest.Log
		p := logProxy(t, c, &logs, func(cfg *kproxy.Config) {
			cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
			cfg.ReleaseIdleBuffers = release
			cfg.ReadTimeoutMs = 20_000 // the linger's bound, far past the test's
			cfg.ShutdownTimeoutMs = 1000
		})
		addr := strings.TrimPrefix(p.url, "http://")
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		head := "POST /commit?topic=orders HTTP/1.1\r\nHost: " + addr + "\r\nContent-Length: 1048576\r\n\r\n"
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		conn.Write(make([]byte, 64<<10)) // then nothing more, and no close
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("release_idle_buffers %v: no answer: %v", release, err)
		}
		answer, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 400 || err != nil {
			t.Fatalf("release_idle_buffers %v: %d %q (%v), want 400 and the end of the stream", release, resp.StatusCode, answer, err)
		}
		if closedWithin(conn, 200*time.Millisecond) {
			t.Fatalf("release_idle_buffers %v: the answered connection was closed at once, want it lingering", release)
		}

		start := time.Now()
		if err := p.stop(); err != nil {
			t.Errorf("release_idle_buffers %v: Run: %v", release, err)
		}
		if took := time.Since(start); took >= time.Second {
			t.Errorf("release_idle_buffers %v: Run returned %v after its stop with no request in flight, want within shutdown_timeout_ms (1s)", release, took)
		}
		if strings.Contains(logs.String(), "still in flight") {
			t.Errorf("release_idle_buffers %v: the shutdown says requests were still in flight; none was:\n%s", release, logs.String())
		}
		if !closedWithin(conn, 3*time.Second) {
			t.Errorf("release_idle_buffers %v: the answered connection still open 3s after Run returned", release)
		}
	}
}
