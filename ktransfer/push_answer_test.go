package ktransfer

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// scriptedBackend answers the n-th request it reads (over every
// connection) by calling answer(n, conn).
func scriptedBackend(t *testing.T, answer func(n int, c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	reqs := make(chan struct{}, 1)
	reqs <- struct{}{}
	n := 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					req.Body.Close()
					<-reqs
					n++
					i := n
					reqs <- struct{}{}
					answer(i, c)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func answerPusher(t *testing.T, addr string, readTimeoutMs int) *pusher {
	t.Helper()
	m := DefaultModule()
	m.Topic = "t"
	m.Protocol.URI = "/push"
	m.Protocol.WriteTimeoutMs, m.Protocol.ConnTimeoutMs, m.Protocol.ReadTimeoutMs = 2000, 2000, readTimeoutMs
	m.BackendServers = []string{addr}
	p, err := newPusher(m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pushRecord(offset int64) *record {
	return &record{msg: &kgo.Record{Topic: "t", Partition: 0, Offset: offset, Value: []byte("v")}, part: &partition{epoch: 1}}
}

// TestTwoHundredWhoseBodyStallsIsPushed: README: "2xx is success. An
// answer is judged by its status and headers: at most 64 KiB of its body is
// read (a longer or endless body is not read further, and its connection is
// closed)". A backend that accepts the record (200, head sent at once) and
// whose body then stalls must be a push, not a retry (a duplicate each
// time, a dead letter after max_retry_times), nor hold the worker for ever
// (read_timeout_ms 0, the default).
func TestTwoHundredWhoseBodyStallsIsPushed(t *testing.T) {
	stall := func(_ int, c net.Conn) {
		c.Write([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"))
		time.Sleep(5 * time.Second) // the body never ends while the push waits
	}
	t.Run("read_timeout_ms 500", func(t *testing.T) {
		p := answerPusher(t, scriptedBackend(t, stall), 500)
		var buf []byte
		a := p.push(0, pushRecord(1), &buf)
		if v, why := judge(a); v != pushed {
			t.Errorf("answered 200 at once, body stalled: verdict %d (%s), want pushed", v, why)
		}
	})
	t.Run("read_timeout_ms 0", func(t *testing.T) {
		p := answerPusher(t, scriptedBackend(t, stall), 0)
		done := make(chan attempt, 1)
		go func() {
			var buf []byte
			done <- p.push(0, pushRecord(1), &buf)
		}()
		select {
		case a := <-done:
			if v, why := judge(a); v != pushed {
				t.Errorf("answered 200 at once, body stalled: verdict %d (%s), want pushed", v, why)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("answered 200 at once, body stalled: the push has not returned after 3 s (its worker is held while the body does not end)")
			p.closeAll()
		}
	})
	t.Run("connection closed within the body", func(t *testing.T) {
		p := answerPusher(t, scriptedBackend(t, func(_ int, c net.Conn) {
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\naccepted"))
			c.Close()
		}), 500)
		var buf []byte
		a := p.push(0, pushRecord(1), &buf)
		if v, why := judge(a); v != pushed {
			t.Errorf("answered 200, connection closed within the body: verdict %d (%s), want pushed", v, why)
		}
	})
}

// TestAnswerOnIdleConnNotTakenForTheNextPush: bytes a backend sends on
// a connection after the answer of its push (a second, late answer)
// must not be read as the answer of the next push sent on that connection
// (Go's net/http client closes such a connection: "Unsolicited response
// received on idle HTTP channel"). Here the backend refuses record 1 (500)
// and then writes a stray 200; it refuses record 2 (503) too, yet record 2
// is judged pushed.
func TestAnswerOnIdleConnNotTakenForTheNextPush(t *testing.T) {
	addr := scriptedBackend(t, func(n int, c net.Conn) {
		switch n {
		case 1:
			c.Write([]byte("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"))
			time.Sleep(50 * time.Millisecond)
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
		default:
			c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"))
		}
	})
	p := answerPusher(t, addr, 2000)
	var buf []byte
	a1 := p.push(0, pushRecord(1), &buf)
	time.Sleep(200 * time.Millisecond) // the stray answer is in the idle connection
	a2 := p.push(0, pushRecord(2), &buf)
	if v, _ := judge(a2); v == pushed {
		t.Errorf("record 1: status %d; record 2, refused with 503 by the backend: status %d, judged pushed (it would be committed)", a1.status, a2.status)
	}
}

// TestSwitchedConnectionNotUsedAgain: a final 101 (Switching Protocols)
// leaves the connection speaking another protocol; HTTP/1.1 cannot be sent
// on it again (RFC 9110 15.2.2). The push answered 101 is retried (a 1xx
// says nothing for the record), and the next push must go on a new
// connection, not wait for an HTTP answer on one that will not give it
// until read_timeout_ms fails it.
func TestSwitchedConnectionNotUsedAgain(t *testing.T) {
	addr := scriptedBackend(t, func(n int, c net.Conn) {
		switch n {
		case 1:
			c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: other\r\n\r\n"))
			time.Sleep(4 * time.Second) // the other protocol: no HTTP from here on
		default:
			c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
		}
	})
	p := answerPusher(t, addr, 2000)
	var buf []byte
	if v, why := judge(p.push(0, pushRecord(1), &buf)); v != retry {
		t.Fatalf("answered 101: verdict %d (%s), want retry", v, why)
	}
	start := time.Now()
	a := p.push(0, pushRecord(1), &buf)
	if v, why := judge(a); v != pushed || time.Since(start) > time.Second {
		t.Errorf("the push after a 101: verdict %d (%s) after %v, want pushed at once on a new connection", v, why, time.Since(start).Round(time.Millisecond))
	}
}
