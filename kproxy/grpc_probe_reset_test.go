package kproxy_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestGRPCPortProbeResetIsNotLogged: a load balancer's TCP health check
// connects to grpc_port and closes without sending a byte; many (HAProxy's,
// by default) close with a reset rather than a FIN. Such a probe is no
// client refused: on either port it is not logged, or the log carries a
// warning for every probe (a line a second, for as long as kproxy runs).
func TestGRPCPortProbeResetIsNotLogged(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	certs := testcert.New(t)
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var logs runtest.Log
			p := logProxy(t, c, &logs, func(cfg *kproxy.Config) {
				cfg.GRPCPort = freeTCPPort(t)
				if tc.tls {
					cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey
				}
			})
			conn, err := net.Dial("tcp", p.srv.GRPCAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			probe := conn.LocalAddr().String()
			conn.(*net.TCPConn).SetLinger(0) // closed with a reset
			conn.Close()
			// A line would come as kproxy reads the reset: looked for
			// for a second.
			for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
				if strings.Contains(logs.String(), probe) {
					t.Fatalf("a probe that sent nothing and reset its connection is logged:\n%s", logs.String())
				}
				time.Sleep(20 * time.Millisecond) // polling the log with a deadline
			}
		})
	}
}
