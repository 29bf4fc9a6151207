package kproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// readAheadPair is a readAheadConn accepted from a local listener and the
// client side of it.
func readAheadPair(t *testing.T) (*readAheadConn, net.Conn) {
	t.Helper()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := readAheadListener{tcp}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc, ok := c.(*readAheadConn)
	if !ok {
		t.Fatalf("accepted %T, want *readAheadConn", c)
	}
	return rc, client
}

// The reads fasthttp makes of a keep-alive connection with
// release_idle_buffers: one byte while waiting for a request, then the
// rest into its reader's buffer, in pieces as small as it asks for. Every
// byte comes out once and in order, across requests arriving whole, two
// in one write, a request larger than the read-ahead buffer, and bytes
// read ahead past a request; and no buffer is held once the bytes read
// are handed out.
func TestReadAheadHandsOutEveryByteInOrder(t *testing.T) {
	c, client := readAheadPair(t)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	big := bytes.Repeat([]byte("0123456789abcdef"), 3*readAheadSize/16+5)
	for i, sent := range [][]byte{
		[]byte("POST /commit HTTP/1.1\r\n\r\n"),
		[]byte("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"),
		big,
	} {
		if _, err := client.Write(sent); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 0, len(sent))
		var one [1]byte
		for len(got) < len(sent) {
			// As fasthttp does: the first byte alone, then reads of 7
			// bytes (smaller than what was read ahead) and of the rest.
			p := one[:]
			if len(got) > 0 {
				p = make([]byte, min(7, len(sent)-len(got)))
				if len(got)%2 == 0 {
					p = make([]byte, len(sent)-len(got))
				}
			}
			n, err := c.Read(p)
			if err != nil {
				t.Fatalf("send %d: read after %d bytes: %v", i, len(got), err)
			}
			got = append(got, p[:n]...)
		}
		if !bytes.Equal(got, sent) {
			t.Fatalf("send %d: read %q, sent %q", i, got, sent)
		}
		if c.buf != nil || len(c.pending) != 0 {
			t.Fatalf("send %d: a buffer is held with %d bytes pending after every byte was handed out", i, len(c.pending))
		}
	}
}

// The wait for a request's first byte ends with the error the read
// deadline gives (fasthttp's idle and read timeouts), and with io.EOF
// when the client closes; bytes sent before the close come out first.
func TestReadAheadDeadlineAndClose(t *testing.T) {
	c, client := readAheadPair(t)
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var one [1]byte
	_, err := c.Read(one[:])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("idle past the read deadline: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write([]byte("xy")); err != nil {
		t.Fatal(err)
	}
	client.Close()
	var got []byte
	for {
		n, err := c.Read(one[:])
		got = append(got, one[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %q: %v, want io.EOF", got, err)
		}
	}
	if string(got) != "xy" {
		t.Fatalf("read %q before io.EOF, sent \"xy\"", got)
	}
}

// timedOut tells whether err is a deadline's timeout.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readWithin reads once from c with a buffer of size bytes and tells how
// long it took.
func readWithin(c net.Conn, size int) (time.Duration, int, error) {
	start := time.Now()
	n, err := c.Read(make([]byte, size))
	return time.Since(start), n, err
}

// A deadline moved later while a socket's earlier one still stands (as
// fasthttp moves the idle deadline before each request) holds: the read
// goes on past the earlier one and ends at the later one, with a
// timeout; and a read that data reaches before it gets the data. Both
// for the wait of a request's first byte and for a read of the rest.
func TestReadAheadLaterDeadlineHolds(t *testing.T) {
	for _, size := range []int{1, 512} {
		c, client := readAheadPair(t)
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		c.SetReadDeadline(time.Now().Add(400 * time.Millisecond))
		took, _, err := readWithin(c, size)
		if !timedOut(err) || took < 350*time.Millisecond || took > 2*time.Second {
			t.Fatalf("read of %d bytes, deadline moved from 50 ms to 400 ms: %v after %v, want a timeout after about 400 ms", size, err, took)
		}
		// The socket's deadline passed long ago; a later one is asked
		// and data comes before it.
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		time.Sleep(100 * time.Millisecond)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		time.AfterFunc(200*time.Millisecond, func() { client.Write([]byte("z")) })
		if took, n, err := readWithin(c, size); err != nil || n != 1 {
			t.Fatalf("read of %d bytes, deadline moved to 5 s after the last one passed, a byte sent at 200 ms: %d bytes, %v after %v", size, n, err, took)
		}
		// No deadline: the read waits for the data.
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		c.SetReadDeadline(time.Time{})
		time.AfterFunc(300*time.Millisecond, func() { client.Write([]byte("z")) })
		if took, n, err := readWithin(c, size); err != nil || n != 1 || took < 250*time.Millisecond {
			t.Fatalf("read of %d bytes, deadline removed, a byte sent at 300 ms: %d bytes, %v after %v", size, n, err, took)
		}
	}
}

// A deadline moved earlier, from another goroutine, ends a read blocked
// now (kproxy's stop ends the lingering reads so) at once.
func TestReadAheadEarlierDeadlineEndsBlockedRead(t *testing.T) {
	for _, size := range []int{1, 512} {
		c, _ := readAheadPair(t)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		time.AfterFunc(100*time.Millisecond, func() { c.SetReadDeadline(time.Unix(1, 0)) })
		if took, _, err := readWithin(c, size); !timedOut(err) || took > 2*time.Second {
			t.Fatalf("read of %d bytes, deadline moved into the past at 100 ms: %v after %v, want a timeout at once", size, err, took)
		}
	}
}

// fillWrites writes to c, whose peer reads nothing, until a write blocks
// on the full socket buffers and ends with an error; it returns that
// write's time and error.
func fillWrite(c net.Conn) (time.Duration, error) {
	chunk := make([]byte, 1<<20)
	for {
		start := time.Now()
		if _, err := c.Write(chunk); err != nil {
			return time.Since(start), err
		}
	}
}

// The write deadline: one moved later holds (an answer to a slow reader
// may take until it), one moved earlier from another goroutine ends a
// blocked write at once.
func TestReadAheadWriteDeadlines(t *testing.T) {
	c, _ := readAheadPair(t)
	c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	time.Sleep(20 * time.Millisecond) // the socket's deadline passes
	c.SetWriteDeadline(time.Now().Add(700 * time.Millisecond))
	start := time.Now()
	took, err := fillWrite(c)
	if !timedOut(err) || time.Since(start) < 650*time.Millisecond || time.Since(start) > 3*time.Second {
		t.Fatalf("writes to a peer reading nothing, deadline moved from a passed one to 700 ms: %v after %v (last write %v), want a timeout after about 700 ms", err, time.Since(start), took)
	}

	c, _ = readAheadPair(t)
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	time.AfterFunc(300*time.Millisecond, func() { c.SetWriteDeadline(time.Unix(1, 0)) })
	start = time.Now()
	if _, err := fillWrite(c); !timedOut(err) || time.Since(start) > 3*time.Second {
		t.Fatalf("writes to a peer reading nothing, deadline moved into the past at 300 ms: %v after %v, want a timeout at once", err, time.Since(start))
	}
}
