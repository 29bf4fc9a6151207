package ktransfer

import (
	"bytes"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// abandonOnAnswerConn calls onAnswer once, from the Read that brings the
// last bytes of the first answer (its body, "ok"): a release's abandon
// landing as the push has read its answer, before the connection goes
// back to its pool.
type abandonOnAnswerConn struct {
	net.Conn
	mu       sync.Mutex
	got      []byte
	onAnswer func()
}

func (c *abandonOnAnswerConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	f := c.onAnswer
	if f != nil {
		c.got = append(c.got, b[:n]...)
		if !bytes.HasSuffix(c.got, []byte("\r\n\r\nok")) {
			f = nil
		} else {
			c.onAnswer = nil
		}
	}
	c.mu.Unlock()
	if f != nil {
		f()
	}
	return n, err
}

// TestAbandonedConnIsNotPooled: a release abandons its partition's push
// just as the push has read its answer (200), before its connection goes
// back to the backend's pool. The connection is closed by the abandon; it
// must not be pooled, or the next push to that backend, of a partition
// still held, takes it and fails at once ("use of closed network
// connection"), counted against the backend's breaker and retried.
func TestAbandonedConnIsNotPooled(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(200)
		w.Write([]byte("ok"))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	m := DefaultModule()
	m.Topic = "t"
	m.Protocol.URI = "/push"
	m.Protocol.ReadTimeoutMs = 2000
	m.Protocol.WriteTimeoutMs = 2000
	m.BackendServers = []string{ln.Addr().String()}
	p, err := newPusher(m)
	if err != nil {
		t.Fatal(err)
	}
	released := &partition{epoch: 1}
	held := &partition{epoch: 1}
	p.backends[0].Dial = func(addr string) (net.Conn, error) {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return nil, err
		}
		hc := &abandonOnAnswerConn{Conn: c}
		hc.onAnswer = func() {
			released.released.Store(true) // as claimed.stop, then the release's abandon
			p.abandon(released)
		}
		return p.conns.add(hc), nil
	}
	push := func(part *partition, off int64) attempt {
		t.Helper()
		done := make(chan attempt, 1)
		go func() {
			var buf []byte
			r := &record{msg: &kgo.Record{Topic: "t", Partition: 0, Offset: off, Value: []byte("v")}, part: part}
			done <- p.push(0, r, &buf)
		}()
		select {
		case a := <-done:
			return a
		case <-time.After(5 * time.Second):
			t.Fatalf("push of offset %d has not returned after 5 s", off)
			return attempt{}
		}
	}
	if a := push(released, 1); a.err != nil || a.status != 200 {
		t.Fatalf("push whose answer was read whole before the abandon: status %d, err %v; want status 200", a.status, a.err)
	}
	if a := push(held, 2); a.err != nil || a.status != 200 {
		t.Fatalf("push of a partition still held, after another's abandoned connection: status %d, err %v; want status 200 (the closed connection was pooled and taken again)", a.status, a.err)
	}
}
