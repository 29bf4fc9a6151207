package kproxy_test

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestGRPCTLSClientRefusedIsLogged: a TLS client of grpc_port that is
// not a gRPC one — HTTPS at HTTP/1.1 (curl to the wrong port: its ALPN
// offers no h2: Go's TLS then settles on no protocol), or no ALPN at all
// (an old client, openssl s_client) — is refused by grpc-go after the
// handshake.
// kproxy's log said nothing of either: it names the client and why, as
// for the other clients that do not speak gRPC.
func TestGRPCTLSClientRefusedIsLogged(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	certs := testcert.New(t)
	for _, tc := range []struct {
		name  string
		alpn  []string
		cause string // in the log line
	}{
		{"https at http/1.1", []string{"http/1.1"}, "ALPN"},
		{"tls without alpn", nil, "ALPN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs runtest.Log
			p := logProxy(t, c, &logs, func(cfg *kproxy.Config) {
				cfg.GRPCPort = freeTCPPort(t)
				cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
			})
			raw, err := net.Dial("tcp", p.srv.GRPCAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			conn := tls.Client(raw, &tls.Config{RootCAs: certs.CA, ServerName: "localhost", NextProtos: tc.alpn})
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if conn.Handshake() == nil {
				io.Copy(io.Discard, conn) // until grpc-go closes it
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
			if line == "" || !strings.Contains(line, tc.cause) {
				t.Fatalf("no log line on grpc_port naming the client and %q; log:\n%s", tc.cause, logs.String())
			}
		})
	}
}
