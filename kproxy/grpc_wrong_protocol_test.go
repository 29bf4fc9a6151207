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

// TestGRPCPortWrongProtocolGetsAReason: a client speaking another
// protocol on grpc_port — an HTTP/1.1 request (curl at the wrong port),
// TLS to the plain port, plain HTTP/2 to the TLS port — was closed
// without a word, kproxy's log silent: an HTTP/1.1 client read binary
// HTTP/2 frames, and the operator had nothing to go by. An HTTP/1.1
// request is answered 400 with a one-line reason; every such client is
// logged, naming its address and why (a line a second at most: a client
// looping cannot flood the log).
func TestGRPCPortWrongProtocolGetsAReason(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	certs := testcert.New(t)
	for _, tc := range []struct {
		name   string
		tls    bool
		speak  func(t *testing.T, conn net.Conn)
		reason string // in the log line
	}{
		{"http/1.1 to the plain port", false, http1Refused, "HTTP/1"},
		{"http/1.1 to the tls port", true, http1Refused, "HTTP/1"},
		{"tls to the plain port", false, func(t *testing.T, conn net.Conn) {
			tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err == nil {
				t.Errorf("a TLS handshake with the plain gRPC port succeeded")
			}
		}, "TLS"},
		{"plain http/2 to the tls port", true, func(t *testing.T, conn net.Conn) {
			io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, conn)
		}, "TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs runtest.Log
			p := logProxy(t, c, &logs, func(cfg *kproxy.Config) {
				cfg.GRPCPort = freeTCPPort(t)
				if tc.tls {
					cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
				}
			})
			for range 3 { // logged once: the others within the second are counted
				conn, err := net.Dial("tcp", p.srv.GRPCAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				tc.speak(t, conn)
				conn.Close()
			}
			var line string
			deadline := time.Now().Add(3 * time.Second) // logged as the client is closed
			for line == "" && time.Now().Before(deadline) {
				for _, l := range strings.Split(logs.String(), "\n") {
					if strings.Contains(l, "grpc_port") && strings.Contains(l, "127.0.0.1:") {
						line = l
					}
				}
				time.Sleep(20 * time.Millisecond) // polling the log with a deadline
			}
			if line == "" || !strings.Contains(line, tc.reason) {
				t.Fatalf("no log line on grpc_port naming the client and %q; log:\n%s", tc.reason, logs.String())
			}
			if n := strings.Count(logs.String(), "grpc_port"); n != 1 {
				t.Errorf("%d lines for 3 clients in a second, want 1:\n%s", n, logs.String())
			}
		})
	}
}

// http1Refused sends an HTTP/1.1 request and wants a 400 whose body says
// the port speaks gRPC.
func http1Refused(t *testing.T, conn net.Conn) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /health HTTP/1.1\r\nHost: kproxy\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Errorf("an HTTP/1.1 request to grpc_port: no HTTP answer (%v)", err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(body), "gRPC") {
		t.Errorf("an HTTP/1.1 request to grpc_port: %d %q, want 400 saying the port speaks gRPC", resp.StatusCode, body)
	}
}
