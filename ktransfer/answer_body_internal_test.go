package ktransfer

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// endlessBackend answers every request 200 with a chunked body that goes on
// (64 KiB every 10 ms) until the client closes the connection or 8 s pass.
// It reports the connection's end on closed.
func endlessBackend(t *testing.T) (addr string, sent *atomic.Int64, closed <-chan time.Time) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sent = new(atomic.Int64)
	end := make(chan time.Time, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(8 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		req.Body.Close()
		if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")); err != nil {
			return
		}
		chunk := []byte("10000\r\n" + strings.Repeat("x", 0x10000) + "\r\n")
		for {
			n, err := c.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				end <- time.Now()
				return
			}
			time.Sleep(10 * time.Millisecond) // a paced stream, not a test wait
		}
	}()
	return ln.Addr().String(), sent, end
}

// TestPushAnswerBodyIsNotReadWithoutBound: a push answered 200 whose body
// never ends is judged by its status at once, and its connection closed: the
// body is not read (and held in memory) for as long as the backend sends it.
func TestPushAnswerBodyIsNotReadWithoutBound(t *testing.T) {
	addr, sent, closed := endlessBackend(t)
	m := DefaultModule()
	m.Protocol.WriteTimeoutMs, m.Protocol.ConnTimeoutMs = 2000, 2000 // as module(): 100 ms fail a loaded machine
	m.Topic = "t"
	m.Protocol.URI = "/push"
	m.Protocol.ReadTimeoutMs = 0 // the documented default: no read timeout
	m.BackendServers = []string{addr}
	p, err := newPusher(m)
	if err != nil {
		t.Fatal(err)
	}
	r := &record{msg: &kgo.Record{Topic: "t", Partition: 0, Offset: 1, Value: []byte("v")}, part: &partition{epoch: 1}}
	done := make(chan attempt, 1)
	start := time.Now()
	go func() {
		var buf []byte
		done <- p.push(0, r, &buf)
	}()
	select {
	case a := <-done:
		if a.err != nil || a.status != 200 {
			t.Fatalf("push: %+v, want status 200", a)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("push answered 200 with an endless body has not returned after 3 s (%d bytes of body sent and read so far)", sent.Load())
	}
	select {
	case at := <-closed:
		t.Logf("connection closed %v after the push began, %d bytes sent", at.Sub(start).Round(time.Millisecond), sent.Load())
	case <-time.After(3 * time.Second):
		t.Fatalf("the endless answer's connection is still read 3 s after the push returned (%d bytes sent)", sent.Load())
	}
}

// TestPushAnswersJudgedByStatusWhateverTheirBody: on one backend, a 200
// with a 10 KB chunked body keeps its connection for the next push; a 503
// whose 70 KB body passes what is read keeps its status and Retry-After,
// and its connection is closed; a 429 with a short body keeps its
// Retry-After; a 204 is a push.
func TestPushAnswersJudgedByStatusWhateverTheirBody(t *testing.T) {
	var conns atomic.Int64
	var n atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch n.Add(1) {
			case 1, 2:
				w.WriteHeader(200)
				for range 10 {
					w.Write([]byte(strings.Repeat("a", 1000)))
					w.(http.Flusher).Flush() // chunked
				}
			case 3:
				w.Header().Set("Retry-After", "7")
				w.Header().Set("Content-Length", "70000")
				w.WriteHeader(503)
				w.Write([]byte(strings.Repeat("b", 70000)))
			case 4:
				w.Header().Set("Retry-After", "3")
				w.WriteHeader(429)
				w.Write([]byte("slow down"))
			default:
				w.WriteHeader(204)
			}
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	m := DefaultModule()
	m.Protocol.WriteTimeoutMs, m.Protocol.ConnTimeoutMs = 2000, 2000 // as module(): 100 ms fail a loaded machine
	m.Topic = "t"
	m.Protocol.URI = "/push"
	m.BackendServers = []string{ln.Addr().String()}
	p, err := newPusher(m)
	if err != nil {
		t.Fatal(err)
	}
	r := &record{msg: &kgo.Record{Topic: "t", Partition: 0, Offset: 1, Value: []byte("v")}, part: &partition{epoch: 1}}
	var buf []byte
	for i, want := range []struct {
		status     int
		retryAfter time.Duration
		conns      int64
	}{{200, 0, 1}, {200, 0, 1}, {503, 7 * time.Second, 1}, {429, 3 * time.Second, 2}, {204, 0, 2}} {
		a := p.push(0, r, &buf)
		if a.err != nil || a.status != want.status || a.retryAfter != want.retryAfter {
			t.Errorf("push %d: %+v, want status %d, Retry-After %v", i+1, a, want.status, want.retryAfter)
		}
		if got := conns.Load(); got != want.conns {
			t.Errorf("after push %d: %d connections made, want %d", i+1, got, want.conns)
		}
	}
}
