package kproxy_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// countingConn counts the bytes its client's transport read.
type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

// TestGRPCShutdownNotHeldByReflectionStreamNotRead: a reflection stream
// whose client sends requests and reads none of the answers fills its
// HTTP/2 window: kproxy's answers wait behind it, the stream cannot end
// and its connection cannot close, so the shutdown waited for it until
// shutdown_timeout_ms. It carries no records: the shutdown must not wait
// for it more than a short bounded while.
func TestGRPCShutdownNotHeldByReflectionStreamNotRead(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	const shutdownTimeout = 10 * time.Second
	var read atomic.Int64
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ShutdownTimeoutMs = int(shutdownTimeout / time.Millisecond) },
		smallWindows(grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return countingConn{conn, &read}, nil
		}))...)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	rc, err := rpb.NewServerReflectionClient(g.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range 5000 {
			if rc.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}) != nil {
				return
			}
		}
	}()
	// The stream's window (64 KiB) sent: kproxy's next answers wait.
	waitFor(t, "the stream's window filled", func() bool { return read.Load() >= 60<<10 })
	start := time.Now()
	if err := g.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if d := time.Since(start); d > shutdownTimeout/2 {
		t.Errorf("shutdown took %v (shutdown_timeout_ms %v) with a reflection stream whose client reads no answers",
			d.Round(time.Millisecond), shutdownTimeout)
	}
}
