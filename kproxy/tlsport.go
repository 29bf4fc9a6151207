package kproxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
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
	cfg          *tls.Config
	writeTimeout time.Duration
}

func (l httpsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &httpsConn{Conn: tls.Server(c, l.cfg), writeTimeout: l.writeTimeout}, nil
}

// httpsConn is a *tls.Conn (its methods, Handshake and ConnectionState
// among them, are the embedded ones) whose Read answers plain HTTP.
type httpsConn struct {
	*tls.Conn
	writeTimeout time.Duration
	answered     bool
}

func (c *httpsConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	var re tls.RecordHeaderError
	if err != nil && !c.answered && errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
		// The handshake read the first 5 bytes, found a request line and
		// wrote nothing: answer on the raw connection, then close it.
		c.answered = true
		re.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout))
		io.WriteString(re.Conn, plainHTTPAnswer)
		re.Conn.Close()
	}
	return n, err
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
