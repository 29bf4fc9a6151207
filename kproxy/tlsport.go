package kproxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// plainHTTPAnswer is written to a client that sent plain HTTP to the port
// with tls_cert_file set: one line saying why, as for every refusal.
const plainHTTPAnswer = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nContent-Length: 55\r\n\r\n" +
	"this port speaks HTTPS only: send the request over TLS\n"

// httpsListener is tls.NewListener whose connections answer a plain HTTP
// request with a 400 saying the port speaks HTTPS (as Go's net/http does),
// where the TLS handshake alone would close the connection without a word
// (a client with an http:// URL could only report an empty reply).
type httpsListener struct {
	net.Listener
	cfg   *tls.Config
	plain plainAnswer
	// atStop lingers the connections kproxy's stop closes after an answer
	// (lingerAtStop), as lingerListener.atStop does the plain port's.
	atStop linger
}

// plainAnswer bounds the answer to a plain HTTP request: its write, and
// the reading of the rest of the request (linger).
type plainAnswer struct {
	writeTimeout time.Duration
	linger       linger
}

func (l httpsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &httpsConn{Conn: tls.Server(c, l.cfg), plain: l.plain, atStop: l.atStop}, nil
}

// httpsConn is a *tls.Conn (its methods, Handshake and ConnectionState
// among them, are the embedded ones) whose Read answers plain HTTP and
// whose Close lingers once refused, or once marked by its own goroutine
// while kproxy stops (see lingerConn). Marked so it lingers whether or
// not the client sent more: bytes it pipelined may wait decrypted in the
// TLS connection's buffer, where the socket shows nothing unread; a
// client that sent nothing more closes at the close_notify. kproxy's stop
// cuts the connections left on the TCP connection beneath (closeConns),
// never through this Close.
type httpsConn struct {
	*tls.Conn
	plain    plainAnswer
	atStop   linger
	answered bool
	refused  atomic.Bool // as lingerConn's
	stopped  atomic.Bool // as lingerConn's
}

func (c *httpsConn) refuse() { c.refused.Store(true) }

func (c *httpsConn) stopAfterAnswer() { c.stopped.Store(true) }

func (c *httpsConn) Close() error {
	refused, stopped := c.refused.Swap(false), c.stopped.Swap(false)
	if refused || stopped {
		l := c.plain.linger
		if stopped {
			l = c.atStop
		}
		// close_notify after the answer, then the TCP connection's
		// write side; what the client still sends is dropped unread.
		if c.Conn.CloseWrite() == nil {
			return l.close(c.Conn.NetConn(), c.Conn.Close)
		}
	}
	return c.Conn.Close()
}

func (c *httpsConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	var re tls.RecordHeaderError
	if err != nil && !c.answered && errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
		// The handshake read the first 5 bytes, found a request line and
		// wrote nothing: answer on the raw connection, then close it.
		c.answered = true
		c.plain.answer(re.Conn)
	}
	return n, err
}

// answer writes the 400 on raw, then closes it. The client may still be
// sending its request (a body larger than the sockets' buffers): closed
// with those bytes unread, the connection is reset, and a client still
// writing reports the reset, not the answer. So the write side is shut
// first and the rest of the request read and dropped, as much as a request
// may be, until the client closes or read_timeout_ms ends.
func (a plainAnswer) answer(raw net.Conn) {
	raw.SetWriteDeadline(time.Now().Add(a.writeTimeout))
	if _, err := io.WriteString(raw, plainHTTPAnswer); err != nil {
		raw.Close()
		return
	}
	a.linger.close(raw, raw.Close)
}

// looksLikeHTTP tells whether the first 5 bytes a client sent start an
// HTTP/1 request line.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "DELET", "PATCH", "OPTIO", "CONNE", "TRACE":
		return true
	}
	return false
}
