//go:build linux

package kproxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestGRPCPortHTTP1SplitRequestGetsA400: grpc_port answers an HTTP/1
// request 400 with the reason, deciding from the client's first bytes. A
// request whose first TCP segment is shorter than what tells HTTP/1 apart
// ("PO", then "ST /commit …"; "G", then "ET / …") was refused on those
// bytes alone — not the HTTP/2 preface, not yet an HTTP/1 request line —
// and closed without its 400, however the same request is answered in one
// segment. kproxy must wait for the bytes that decide, and answer 400. A
// client that sends such a start and then nothing is still closed at once
// at shutdown.
func TestGRPCPortHTTP1SplitRequestGetsA400(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	certs := testcert.New(t)
	for _, tls := range []bool{false, true} {
		g := startGRPC(t, c, func(cfg *kproxy.Config) {
			cfg.IdleTimeoutMs, cfg.ShutdownTimeoutMs = 10_000, 1000
			if tls {
				cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
			}
		})
		port := g.srv.GRPCAddr().(*net.TCPAddr).Port
		for _, split := range [][2]string{
			{"PO", "ST /commit?topic=" + topic + " HTTP/1.1\r\nHost: kproxy\r\nContent-Length: 0\r\n\r\n"},
			{"G", "ET /health HTTP/1.1\r\nHost: kproxy\r\n\r\n"},
			{"GET", " /health HTTP/1.1\r\nHost: kproxy\r\n\r\n"},
		} {
			name := map[bool]string{false: "plain ", true: "tls "}[tls] + split[0] + "|" + strings.Fields(split[1])[0]
			t.Run(name, func(t *testing.T) {
				conn := dialSent(t, g.srv.GRPCAddr().String(), port, split[0])
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(conn, split[1]) // may fail: the connection was closed
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatalf("an HTTP/1.1 request sent as %q then the rest: no HTTP answer (%v)", split[0], err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 400 || !strings.Contains(string(body), "gRPC") {
					t.Errorf("answered %d %q, want 400 saying the port speaks gRPC", resp.StatusCode, body)
				}
			})
		}
		t.Run(map[bool]string{false: "plain", true: "tls"}[tls]+" PO then nothing, shutdown", func(t *testing.T) {
			conn := dialSent(t, g.srv.GRPCAddr().String(), port, "PO")
			defer conn.Close()
			start := time.Now()
			if err := g.stop(); err != nil {
				t.Errorf("Run: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("shutdown took %v (shutdown_timeout_ms 1000) with a connection that sent %q", d.Round(time.Millisecond), "PO")
			}
		})
	}
}

// dialSent connects to addr (grpc_port, port) and sends first, as a TCP
// segment of its own: it returns once kproxy has read it (its socket of
// the connection holds no unread byte) or closed the connection. That
// socket is found by its peer, the client's address: a count of the
// sockets accepted would miss it while an earlier connection's closes.
func dialSent(t *testing.T, addr string, port int, first string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	client := conn.LocalAddr().(*net.TCPAddr).Port
	mine := func() (int, bool) {
		for _, fd := range accepted(t, port) {
			if p, err := unix.Getpeername(fd); err == nil {
				if a, ok := p.(*unix.SockaddrInet4); ok && a.Port == client {
					return fd, true
				}
			}
		}
		return 0, false
	}
	waitFor(t, "the connection accepted", func() bool { _, ok := mine(); return ok })
	if _, err := io.WriteString(conn, first); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "kproxy reading "+first, func() bool {
		fd, ok := mine()
		if !ok {
			return true // closed
		}
		n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
		return err != nil || n == 0
	})
	return conn
}
