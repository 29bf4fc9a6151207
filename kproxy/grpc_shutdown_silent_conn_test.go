//go:build linux

package kproxy_test

import (
	"net"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestGRPCShutdownNotHeldBySilentConnection: a connection to grpc_port
// that has sent nothing yet (a TCP probe, a client stalled before its TLS
// handshake or HTTP/2 preface) has no call: the shutdown must not wait
// for it. grpc-go's Stop and GracefulStop wait for every connection still
// in its handshake, which ends only at the handshake's timeout
// (idle_timeout_ms, 60 s by default): kproxy's shutdown was held that
// long, past shutdown_timeout_ms.
func TestGRPCShutdownNotHeldBySilentConnection(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	certs := testcert.New(t)
	for _, tc := range []struct {
		name string
		tls  bool
		send string
	}{
		{"plain, nothing sent", false, ""},
		{"plain, half a preface", false, "PRI * HTTP/2.0\r\n"},
		{"tls, nothing sent", true, ""},
		{"tls, half a ClientHello", true, "\x16\x03\x01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGRPC(t, c, func(cfg *kproxy.Config) {
				cfg.IdleTimeoutMs, cfg.ShutdownTimeoutMs = 10_000, 1000
				if tc.tls {
					cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
				}
			})
			port := g.srv.GRPCAddr().(*net.TCPAddr).Port
			conn, err := net.Dial("tcp", g.srv.GRPCAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write([]byte(tc.send)); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(30 * time.Second); acceptedSockets(t, port) == 0; {
				if time.Now().After(deadline) {
					t.Fatal("the connection was never accepted")
				}
				time.Sleep(10 * time.Millisecond) // polling with a deadline
			}
			start := time.Now()
			if err := g.stop(); err != nil {
				t.Errorf("Run: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("shutdown took %v (shutdown_timeout_ms 1000) with a connection on grpc_port that had sent no call", d.Round(time.Millisecond))
			}
		})
	}
}
