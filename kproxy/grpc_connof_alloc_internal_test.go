package kproxy

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/peer"
)

// TestGRPCConnOfAllocatesNothing: every gRPC call (each Produce, each
// stream) finds its grpc_port connection (grpcListener.connOf), to count
// it for the shutdown, under the listener's lock. That is the hot path:
// it must find the right connection among many, forget it once closed,
// and cost no allocation per call (formatting the call's addresses into
// strings made six, and held the lock over a map of string keys).
func TestGRPCConnOfAllocatesNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &grpcListener{Listener: ln}
	t.Cleanup(func() { ln.Close() })
	const n = 20
	dialed := make(chan net.Conn, n)
	go func() {
		for range n {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				close(dialed)
				return
			}
			dialed <- c
		}
	}()
	var conns []*grpcConn
	for range n {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c.(*grpcConn))
	}
	for range n {
		if c, ok := <-dialed; ok {
			t.Cleanup(func() { c.Close() })
		}
	}
	// A call's peer as grpc-go makes it: the connection's addresses.
	callOf := func(c *grpcConn) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: c.RemoteAddr(), LocalAddr: c.LocalAddr()})
	}
	for i, c := range conns {
		if got := l.connOf(callOf(c)); got != c {
			t.Fatalf("call on connection %d: found %p, want %p", i, got, c)
		}
	}
	ctx := callOf(conns[n/2])
	if a := testing.AllocsPerRun(100, func() {
		if l.connOf(ctx) != conns[n/2] {
			t.Fatal("wrong connection")
		}
	}); a != 0 {
		t.Errorf("finding a call's connection allocates %v times per call, want none", a)
	}
	gone := callOf(conns[3])
	conns[3].Close()
	if got := l.connOf(gone); got != nil {
		t.Errorf("a closed connection is still found for its calls")
	}
	if got := l.connOf(context.Background()); got != nil {
		t.Errorf("a call without a peer found a connection")
	}
}
