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
