package kproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// readAheadPair is a connection accepted by a readAheadListener and its
// client end.
func readAheadPair(t *testing.T, size int) (*readAheadConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newReadAheadListener(ln, size)
	t.Cleanup(func() { l.Close() })
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc, ok := c.(*readAheadConn)
	if !ok {
		t.Fatalf("accepted a %T", c)
	}
	return rc, client
}

// The one-byte read takes what arrived, and the next reads are served
// from it without the socket: they succeed with the read deadline passed.
// Once it is read, the connection holds no buffer.
func TestReadAheadServesWhatArrived(t *testing.T) {
	c, client := readAheadPair(t, 64)
	req := "POST /commit?topic=t HTTP/1.1\r\n"
	if _, err := client.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if n, err := c.Read(one); n != 1 || err != nil || one[0] != 'P' {
		t.Fatalf("one-byte read: %d %q %v", n, one[:n], err)
	}
	if c.buf == nil {
		t.Fatal("nothing read ahead")
	}
	c.SetReadDeadline(time.Now().Add(-time.Second)) // the socket would answer a timeout now
	got := []byte("P")
	small := make([]byte, 7) // read in pieces
	for len(got) < len(req) {
		n, err := c.Read(small)
		if err != nil {
			t.Fatalf("after %q: %v (read from the socket, not from what was read ahead)", got, err)
		}
		got = append(got, small[:n]...)
	}
	if string(got) != req {
		t.Fatalf("read %q, sent %q", got, req)
	}
	if c.buf != nil || len(c.data) != 0 {
		t.Fatalf("holds a buffer after all was read: %d bytes left", len(c.data))
	}
	// Nothing read ahead now: the socket's deadline applies.
	if _, err := c.Read(one); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("one-byte read past the deadline: %v", err)
	}
	if _, err := c.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
}

// A one-byte read waits for data holding no buffer, takes at most a
// buffer's worth, and ends with io.EOF when the client closes.
func TestReadAheadWaitsAndEnds(t *testing.T) {
	c, client := readAheadPair(t, 16)
	type result struct {
		b   byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		one := make([]byte, 1)
		_, err := c.Read(one)
		done <- result{one[0], err}
	}()
	select { // the reader waits for the request
	case r := <-done:
		t.Fatalf("read returned before anything was sent: %v", r.err)
	case <-time.After(50 * time.Millisecond):
	}
	msg := "abcdefghijklmnopqrstuvwxyz" // more than a buffer
	if _, err := client.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.b != 'a' {
		t.Fatalf("one-byte read: %q %v", r.b, r.err)
	}
	if len(c.data) > 15 {
		t.Fatalf("read ahead %d bytes into a buffer of 16", len(c.data)+1)
	}
	got := []byte("a")
	buf := make([]byte, 64)
	for len(got) < len(msg) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != msg {
		t.Fatalf("read %q, sent %q", got, msg)
	}
	client.Close()
	if n, err := c.Read(buf[:1]); n != 0 || err != io.EOF {
		t.Fatalf("after the client closed: %d, %v", n, err)
	}
}

// deadlineConn counts the read deadlines set on it.
type deadlineConn struct {
	net.Conn
	sets []time.Time
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.sets = append(c.sets, t)
	return nil
}

func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }

func (c *deadlineConn) Read(p []byte) (int, error) { return len(p), nil }

// Read deadlines reach the socket only when it is read, the last one set
// then; reads served from what was read ahead set none.
func TestReadAheadDeadlineSetBeforeReading(t *testing.T) {
	inner := &deadlineConn{}
	c := &readAheadConn{Conn: inner}
	idle, read := time.Now().Add(time.Minute), time.Now().Add(100*time.Millisecond)
	c.SetReadDeadline(idle)
	c.SetReadDeadline(read)
	if len(inner.sets) != 0 {
		t.Fatalf("set on the socket before any read: %v", inner.sets)
	}
	if _, err := c.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	if len(inner.sets) != 1 || !inner.sets[0].Equal(read) {
		t.Fatalf("set on the socket: %v, want the last one (%v) once", inner.sets, read)
	}
	if _, err := c.Read(make([]byte, 8)); err != nil || len(inner.sets) != 1 {
		t.Fatalf("a read with no new deadline set one again: %v %v", inner.sets, err)
	}
	// What was read ahead is served without the socket.
	b := []byte("abc")
	c.buf, c.data = &b, b
	c.pool = &sync.Pool{}
	c.SetReadDeadline(idle)
	if n, err := c.Read(make([]byte, 8)); n != 3 || err != nil || len(inner.sets) != 1 {
		t.Fatalf("read ahead: %d %v, deadlines set %v", n, err, inner.sets)
	}
	c.SetDeadline(time.Time{})
	if _, err := c.Read(make([]byte, 8)); err != nil || len(inner.sets) != 2 || !inner.sets[1].IsZero() {
		t.Fatalf("after SetDeadline(zero): deadlines set %v, %v", inner.sets, err)
	}
}
