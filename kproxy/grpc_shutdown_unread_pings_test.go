package kproxy_test

import (
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCShutdownNotHeldByPingsOfStreamNotRead: at shutdown a
// ProduceStream whose client reads no answers is cut once nothing went out
// to its client for max(1 s, write_timeout_ms). A client whose transport
// sends keepalive pings (every 10 s, grpc-go's shortest; kproxy permits
// every 5 s) reads no answer more for them: kproxy's acks of its pings
// are no answer it takes, and must not hold the shutdown until
// shutdown_timeout_ms when write_timeout_ms (11 s here) is longer than the
// pings' interval.
func TestGRPCShutdownNotHeldByPingsOfStreamNotRead(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	const shutdownTimeout, writeTimeout = 15 * time.Second, 11 * time.Second
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.ShutdownTimeoutMs = int(shutdownTimeout / time.Millisecond)
		cfg.WriteTimeoutMs = int(writeTimeout / time.Millisecond)
	}, smallWindows(grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, PermitWithoutStream: true}))...)

	// Each answer carries 2000 results (about 20 KB): 12 answered are
	// more than the client's window holds (3).
	const perReq, reqs = 2000, 12
	s := sendAllWritten(t, g, c, reqs, perReq)

	start := time.Now()
	waitStopped(t, stopInBackground(g), shutdownTimeout+writeTimeout+5*time.Second)
	if d := time.Since(start); d > writeTimeout+3*time.Second {
		t.Errorf("shutdown took %v (write_timeout_ms %v, shutdown_timeout_ms %v) with a stream whose client reads no answers but pings",
			d.Round(time.Millisecond), writeTimeout, shutdownTimeout)
	}
	resps, end := recvAll(s)
	checkInOrder(t, resps)
	if end == nil {
		t.Errorf("the stream ended OK after %d answers at shutdown, want an error", len(resps))
	}
	t.Logf("stop took %v; %d answers read, stream end %v", time.Since(start).Round(time.Millisecond), len(resps), end)
}
