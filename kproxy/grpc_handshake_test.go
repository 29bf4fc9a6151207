package kproxy_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestGRPCStalledHandshakeClosedAtIdleTimeout: a connection to grpc_port
// that never finishes its TLS handshake (or, without TLS, never sends the
// HTTP/2 preface) is a connection without a call: closed at
// idle_timeout_ms, as the HTTP port closes one that sends nothing. It was
// held for grpc-go's own 120 s connection timeout, whatever
// idle_timeout_ms said: a client holding many such connections kept their
// sockets and goroutines that long.
func TestGRPCStalledHandshakeClosedAtIdleTimeout(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	certs := testcert.New(t)
	for _, tc := range []struct {
		name string
		tls  bool
		send []byte
	}{
		{"tls, nothing sent", true, nil},
		{"tls, half a ClientHello", true, []byte{0x16, 0x03, 0x01}},
		{"plain, half a preface", false, []byte("PRI * HTTP/2.0\r\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGRPC(t, c, func(cfg *kproxy.Config) {
				cfg.IdleTimeoutMs = 300
				if tc.tls {
					cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
				}
			})
			conn, err := net.Dial("tcp", g.srv.GRPCAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			conn.SetReadDeadline(start.Add(6 * time.Second)) // 300 ms and a loaded machine's stalls; the defect held it 120 s
			n, err := io.Copy(io.Discard, conn)              // until kproxy closes it
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("still open %v after a stalled start (idle_timeout_ms 300)", time.Since(start).Round(time.Millisecond))
			}
			t.Logf("closed after %v (%d bytes, %v)", time.Since(start).Round(time.Millisecond), n, err)
		})
	}
}
