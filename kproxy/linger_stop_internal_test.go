package kproxy

import (
	"net"
	"testing"
	"time"
)

// stopConn accepts one connection through the HTTP port's wrappers
// (readAheadListener, lingerListener) and returns it with its client.
func stopConn(t *testing.T, readTimeout time.Duration) (srv *lingerConn, cli net.Conn, set *lingering) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	set = &lingering{}
	t.Cleanup(set.stop)
	cfg := Config{ReadTimeoutMs: int(readTimeout / time.Millisecond), MaxHeaderBytes: 8192, MaxRequestSizeBytes: 1 << 20}
	l := lingerListener{Listener: readAheadListener{ln}, linger: newLinger(cfg, &lingering{}), atStop: newLinger(cfg, set)}
	if cli, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c.(*lingerConn), cli, set
}

// TestStopCloseFromAnotherGoroutineIsAtOnce: while kproxy stops, fasthttp
// closes idle connections, and kproxy cuts those left, from goroutines
// that are not the connections'. Such a Close must not linger (a review
// of the first version of the stop's lingering found it waited there for
// the client until read_timeout_ms, past the stop's bounds, and read the
// connection beside the goroutine serving it): only a connection its own
// handler marked (lingerAtStop) lingers, and closeNow never does.
func TestStopCloseFromAnotherGoroutineIsAtOnce(t *testing.T) {
	const readTimeout = 3 * time.Second
	for _, tc := range []struct {
		name  string
		mark  bool
		close func(*lingerConn) error
	}{
		{"unmarked Close", false, (*lingerConn).Close},
		{"marked closeNow", true, (*lingerConn).closeNow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli, _ := stopConn(t, readTimeout)
			cli.Write([]byte("POST /commit?topic=t HTTP/1.1\r\nHost: k\r\nContent-Length: 5\r\n\r\nhello"))
			for deadline := time.Now().Add(5 * time.Second); !unread(srv.Conn); {
				if time.Now().After(deadline) {
					t.Fatal("the client's bytes never reached the server's socket")
				}
				time.Sleep(time.Millisecond)
			}
			if tc.mark {
				lingerAtStop(srv)
			}
			start := time.Now()
			tc.close(srv) // the client keeps the connection open
			if d := time.Since(start); d > time.Second {
				t.Fatalf("%s took %v (read_timeout_ms %v): the stop waits for a client that does not close", tc.name, d.Round(time.Millisecond), readTimeout)
			}
		})
	}
}

// TestStopCloseMarkedLingers: the connection's own goroutine marked it
// (its answer was the last, kproxy stopping) and closes it with the
// client's bytes unread: the write side is shut at once (the client reads
// its answers, then the end of the stream), and what the client sends is
// drained until it closes, not reset.
func TestStopCloseMarkedLingers(t *testing.T) {
	srv, cli, _ := stopConn(t, 5*time.Second)
	srv.Write([]byte("answer"))
	cli.Write([]byte("GET / HTTP/1.1\r\nHost: k\r\n\r\n"))
	for deadline := time.Now().Add(5 * time.Second); !unread(srv.Conn); {
		if time.Now().After(deadline) {
			t.Fatal("the client's bytes never reached the server's socket")
		}
		time.Sleep(time.Millisecond)
	}
	lingerAtStop(srv)
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	cli.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 64)
	n, err := cli.Read(b)
	if string(b[:n]) != "answer" {
		t.Fatalf("client read %q, %v; want the answer", b[:n], err)
	}
	if n, err = cli.Read(b); n != 0 || err == nil || err.Error() != "EOF" {
		t.Fatalf("after the answer: %d bytes, %v; want the end of the stream (EOF), not a reset", n, err)
	}
	select {
	case <-closed:
		t.Fatal("the marked Close returned before its client closed: it did not linger")
	case <-time.After(100 * time.Millisecond):
	}
	cli.Close()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the marked Close did not return 5 s after its client closed")
	}
}
