package tcpproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// echo is a line echo server counting the connections it accepted.
type echo struct {
	ln       net.Listener
	accepted atomic.Int32
	lines    atomic.Int32 // lines received
}

func startEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					e.lines.Add(1)
					if _, err := io.WriteString(c, line); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return e
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// roundTrip writes line and reads its echo within d.
func roundTrip(c net.Conn, r *bufio.Reader, line string, d time.Duration) (string, error) {
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(d))
	got, err := r.ReadString('\n')
	c.SetReadDeadline(time.Time{})
	if err != nil {
		return "", err
	}
	return got[:len(got)-1], nil
}

// closedByPeer: the other end closed the connection (a reset when it had
// unread bytes).
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestForwards(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	c, r := dial(t, p.Addr())
	for _, line := range []string{"one", "two"} {
		if got, err := roundTrip(c, r, line, 10*time.Second); err != nil || got != line {
			t.Fatalf("echo of %q through the proxy: %q, %v", line, got, err)
		}
	}
	if p.Conns() != 1 {
		t.Errorf("%d connections, want 1", p.Conns())
	}
}

// While frozen nothing reaches the server, and nothing comes back, on an
// open connection or a new one; the connections stay open, and after the
// thaw the held bytes go through.
func TestFreezeHoldsBytesAndThawReleasesThem(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	c, r := dial(t, p.Addr())
	if _, err := roundTrip(c, r, "before", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Freeze()
	if !p.Frozen() {
		t.Fatal("not frozen after Freeze")
	}
	_, err := roundTrip(c, r, "held", 300*time.Millisecond)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("answer while frozen: %v; want a read timeout", err)
	}
	if n := e.lines.Load(); n != 1 {
		t.Errorf("the server received %d lines, want only the one sent before the freeze", n)
	}
	// A new connection is accepted but not dialled through.
	c2, r2 := dial(t, p.Addr())
	io.WriteString(c2, "new\n")
	time.Sleep(200 * time.Millisecond)
	if n := e.accepted.Load(); n != 1 {
		t.Errorf("the server accepted %d connections while frozen, want 1", n)
	}
	p.Freeze() // twice is fine
	p.Thaw()
	for _, tc := range []struct {
		c    net.Conn
		r    *bufio.Reader
		want string
	}{{c, r, "held"}, {c2, r2, "new"}} {
		tc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := tc.r.ReadString('\n')
		if err != nil || got != tc.want+"\n" {
			t.Errorf("after the thaw: %q, %v; want %q", got, err, tc.want)
		}
	}
	p.Thaw() // twice is fine
	if got, err := roundTrip(c, r, "after", 10*time.Second); err != nil || got != "after" {
		t.Errorf("after the thaw: %q, %v", got, err)
	}
}

// Cut closes the current connections at once, frozen or not; new ones
// work.
func TestCutClosesCurrentConnections(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	c1, r1 := dial(t, p.Addr())
	c2, r2 := dial(t, p.Addr())
	for _, c := range []struct {
		c net.Conn
		r *bufio.Reader
	}{{c1, r1}, {c2, r2}} {
		if _, err := roundTrip(c.c, c.r, "x", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	p.Freeze()
	if n := p.Cut(); n != 2 {
		t.Errorf("Cut closed %d connections, want 2", n)
	}
	for i, r := range []*bufio.Reader{r1, r2} {
		c := []net.Conn{c1, c2}[i]
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := r.ReadString('\n'); !closedByPeer(err) {
			t.Errorf("connection %d after Cut: read %v, want it closed", i+1, err)
		}
	}
	waitFor(t, "no connection left", func() bool { return p.Conns() == 0 })
	p.Thaw()
	c3, r3 := dial(t, p.Addr())
	if got, err := roundTrip(c3, r3, "again", 10*time.Second); err != nil || got != "again" {
		t.Errorf("a new connection after Cut: %q, %v", got, err)
	}
}

// A target that refuses connections: the client's connection is closed.
func TestTargetDownClosesClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()
	p := startProxy(t, target)
	c, r := dial(t, p.Addr())
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadString('\n'); !closedByPeer(err) {
		t.Errorf("read through a proxy whose target is down: %v, want it closed", err)
	}
}

func TestCloseStopsListening(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	c, r := dial(t, p.Addr())
	p.Freeze() // a frozen link does not keep Close waiting
	io.WriteString(c, "x\n")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadString('\n'); !closedByPeer(err) {
		t.Errorf("connection after Close: %v, want it closed", err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("the proxy still accepts connections after Close")
	}
	p.Close() // idempotent
}
