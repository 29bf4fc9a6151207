package kproxy_test

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestGRPCPortWrongProtocolAllCountedAtStop: the clients of grpc_port
// that do not speak gRPC are logged a line a second at most, the next
// line counting those held back (suppressed=N). Those held back after
// the last line must be counted when kproxy stops, as the other sampled
// lines are, or the log undercounts them.
func TestGRPCPortWrongProtocolAllCountedAtStop(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	var logs runtest.Log
	p := logProxy(t, c, &logs, func(cfg *kproxy.Config) { cfg.GRPCPort = freeTCPPort(t) })
	const n = 3
	for range n {
		conn, err := net.Dial("tcp", p.srv.GRPCAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		http1Refused(t, conn) // answered, so logged or counted
		conn.Close()
	}
	if err := p.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	counted := 0
	num := regexp.MustCompile(`\bsuppressed=(\d+)`)
	for _, l := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(l, "grpc_port") {
			continue
		}
		m := num.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		k, _ := strconv.Atoi(m[1])
		if strings.Contains(l, "client=") {
			counted++ // the line's own client
		}
		counted += k
	}
	if counted != n {
		t.Errorf("%d clients that do not speak gRPC, the log accounts for %d:\n%s", n, counted, logs.String())
	}
}
