package ktransfer

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// countingBackend answers every request 200 with a small body and counts
// the connections it accepted.
func countingBackend(t *testing.T, answer string) (string, func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns := make(chan struct{}, 1000)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- struct{}{}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				br := bufio.NewReader(c)
				for {
					for {
						l, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if l == "\r\n" {
							break
						}
					}
					br.Discard(1) // the body: "v"
					c.Write([]byte(answer))
				}
			}()
		}
	}()
	return ln.Addr().String(), func() int { return len(conns) }
}

// TestKeptAliveConnUnusedOneSecondReused: README: "Keep-alive
// connections, at most worker_num per backend; one unused for 4 s is
// closed". A connection unused for 1.5 s (then 0.3 s with read_timeout_ms
// 200) must carry the next push: since 6770da7 each was closed and a new
// one opened.
func TestKeptAliveConnUnusedOneSecondReused(t *testing.T) {
	for _, tc := range []struct {
		name          string
		answer        string
		readTimeoutMs int
		idle          time.Duration
	}{
		{"200 with a body, read_timeout_ms 0, idle 1.5 s", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, 1500 * time.Millisecond},
		{"204, read_timeout_ms 200, idle 0.3 s", "HTTP/1.1 204 No Content\r\n\r\n", 200, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, accepted := countingBackend(t, tc.answer)
			p := answerPusher(t, addr, tc.readTimeoutMs)
			var buf []byte
			for i := range 3 {
				if i > 0 {
					time.Sleep(tc.idle)
				}
				if v, why := judge(p.push(0, pushRecord(int64(i)), &buf)); v != pushed {
					t.Fatalf("push %d: %s", i, why)
				}
			}
			if n := accepted(); n != 1 {
				t.Errorf("3 pushes %v apart (under the 4 s idle timeout): %d connections opened, want 1 kept alive", tc.idle, n)
			}
		})
	}
}

// TestPeekFalseOnAnIdleHealthyConn: the cause of the above: the check
// for bytes waiting took a healthy connection, nothing to read, for an
// unfit one once the read deadline set for its last answer had passed.
func TestPeekFalseOnAnIdleHealthyConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			time.Sleep(3 * time.Second)
			c.Close()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if newPeeker(c).pending() {
		t.Fatal("pending on a fresh idle connection")
	}
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond)) // as RoundTrip leaves it after an answer's body
	time.Sleep(200 * time.Millisecond)
	if newPeeker(c).pending() {
		t.Errorf("pending: true on a healthy idle connection with nothing to read, once its read deadline passed")
	}
}

// TestIPv6BackendDialed: a backend_servers entry [::1]:<port> loads
// (host:port), and fasthttp's Dial, IPv4 only, refused to dial it ("couldn't
// find dns entries ... try using dual-stack dialing"): every push failed
// and was retried for ever. The dial is dual stack now: the push reaches
// the address (here a closed port, so that no IPv6 listener is needed: the
// error is the connection's, not the dialer's refusal).
func TestIPv6BackendDialed(t *testing.T) {
	m := uriModule("/push/{#KEY}", nil)
	m.BackendServers = []string{"[::1]:1"}
	if err := m.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	p, err := newPusher(m)
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	a := p.push(0, pushRecord(1), &buf)
	if a.err == nil || strings.Contains(a.err.Error(), "dns entries") || strings.Contains(a.err.Error(), "dual-stack") {
		t.Errorf("push to [::1]:1: %v, want the connection's refusal, not the dialer's", a.err)
	}
}
