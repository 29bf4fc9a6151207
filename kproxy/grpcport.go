package kproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// grpcListener is grpc_port's listener. grpc-go closes a connection whose
// client speaks another protocol without a word, and logs it only in its
// own logger (off): an HTTP/1.1 client (curl at the wrong port) read the
// binary HTTP/2 SETTINGS frame, TLS sent to the plain port or plain text
// to the TLS port just saw the connection closed, and kproxy's log said
// nothing. Its connections look at the client's first bytes: an HTTP/1
// request is answered 400 with a one-line reason, and every such client is
// logged (sampled: a line a second at most), naming its address and why.
type grpcListener struct {
	net.Listener
	tls   bool // the port speaks TLS (tls_cert_file)
	plain plainAnswer
	log   *sampled

	// starting are the connections still in grpc-go's handshake (TLS,
	// the HTTP/2 preface and SETTINGS): no call yet. grpc-go's Stop and
	// GracefulStop wait for them, until the handshake's timeout
	// (idle_timeout_ms): the shutdown closes them instead (stop).
	mu       sync.Mutex
	starting map[*grpcConn]struct{}
	stopped  bool
	// open are the connections not closed, by their client's address as
	// a call's peer holds it (connOf): the one Accept's connection gives,
	// grpc-go's peer (through TLS too) the same pointer.
	open map[*net.TCPAddr]*grpcConn
	// sendWait bounds, at shutdown, the answers a client does not read
	// (grpcConn.drain).
	sendWait time.Duration
}

// connOf is the connection of the call of ctx; nil when unknown. It is on
// every call's path: a pointer looked up, nothing formatted.
func (l *grpcListener) connOf(ctx context.Context) *grpcConn {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	a, ok := p.Addr.(*net.TCPAddr)
	if !ok || a == nil {
		return nil
	}
	l.mu.Lock()
	c := l.open[a]
	l.mu.Unlock()
	return c
}

func (l *grpcListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		// grpc-go sets it on a *net.TCPConn only, never on a grpcConn.
		setUserTimeout(tc, grpcKeepaliveTimeout)
	}
	gc := &grpcConn{Conn: c, l: l}
	gc.addr, _ = c.RemoteAddr().(*net.TCPAddr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		c.Close() // its handshake fails at once
		return gc, nil
	}
	if l.starting == nil {
		l.starting = make(map[*grpcConn]struct{})
		l.open = make(map[*net.TCPAddr]*grpcConn)
	}
	l.starting[gc] = struct{}{}
	if gc.addr != nil {
		l.open[gc.addr] = gc
	}
	return gc, nil
}

// started notes that c is past its handshake (or closed).
func (l *grpcListener) started(c *grpcConn) {
	l.mu.Lock()
	delete(l.starting, c)
	l.mu.Unlock()
}

// closed forgets c.
func (l *grpcListener) closed(c *grpcConn) {
	l.mu.Lock()
	delete(l.starting, c)
	if c.addr != nil && l.open[c.addr] == c {
		delete(l.open, c.addr)
	}
	l.mu.Unlock()
}

// stop closes the connections still in their handshake, and those
// accepted from now on: they carry no call, and grpc-go's stop would wait
// for them. The others are closed once their calls ended and their last
// answers, unread, waited sendWait (grpcConn.drain). It may be called more
// than once.
func (l *grpcListener) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	for c := range l.starting {
		c.Conn.Close()
	}
	for _, c := range l.open {
		c.drain()
	}
}

// grpcKeepaliveTimeout is grpc-go's keepalive timeout (its default), and
// the TCP_USER_TIMEOUT it gives each connection it serves: a client gone
// without a word (its host down, the network cut) while kproxy sends to
// it is closed after 20 s, its calls ended, not after the kernel's
// retransmissions (about 15 minutes).
const grpcKeepaliveTimeout = 20 * time.Second

// setUserTimeout sets c's TCP_USER_TIMEOUT to d, as grpc-go does.
func setUserTimeout(c *net.TCPConn, d time.Duration) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d/time.Millisecond))
	})
}

// errNotGRPC ends grpc-go's read of a client speaking another protocol.
var errNotGRPC = errors.New("the client does not speak grpc")

// grpcConn checks the first bytes its client sends: the HTTP/2 preface on
// the plain port, a TLS record on the TLS port. Until they are checked,
// what grpc-go writes (the plain port's SETTINGS, sent before the preface
// is read) is held, so that a client of another protocol reads nothing
// but the reason; then it goes out and the connection is grpc-go's.
type grpcConn struct {
	net.Conn
	l       *grpcListener
	checked atomic.Bool
	mu      sync.Mutex
	seen    int          // bytes of the client's checked
	first   []byte       // its first bytes, up to 8, to name the protocol
	held    []byte       // written before the check
	addr    *net.TCPAddr // its client's, the key of open

	// calls are the calls on the connection whose handlers run; unreads
	// those of them, streams at shutdown, whose client reads no
	// answers (maybeCut).
	callsMu  sync.Mutex
	calls    int
	unreads  int
	draining bool      // shutting down (drain)
	since    time.Time // the shutdown began, or a call's handler returned since: its answer goes out
	armed    bool      // recheck runs when sendWait passed since
	cut      bool
	// wrote is when a write to the client last went through (one longer
	// than controlWrite: not a PING's ack), noted from the shutdown on
	// (noting): a client still taking its answers is not cut.
	noting atomic.Bool
	wrote  atomic.Int64 // unix nanoseconds
}

// drain notes the shutdown. grpc-go's GracefulStop waits for every
// connection to close, and one closes once its calls' last answers are
// sent: to a client that reads none, whose HTTP/2 window is full, they are
// never sent (a reflection stream's; a ProduceStream's, queued before it
// ended, or that its handler waits to send), and the shutdown waited until
// shutdown_timeout_ms. The connection is closed once every call still on
// it is a stream whose client reads no answers (unread), or none is left,
// and sendWait passed since the shutdown began, since the last handler
// returned (for its answer to go out) and since the last write to the
// client went through: no answer is still to come on it, and its client
// takes none.
func (c *grpcConn) drain() {
	c.callsMu.Lock()
	c.draining, c.since = true, time.Now()
	c.noting.Store(true)
	c.maybeCut()
	c.callsMu.Unlock()
}

func (c *grpcConn) callStarted() {
	c.callsMu.Lock()
	c.calls++
	c.callsMu.Unlock()
}

func (c *grpcConn) callEnded() {
	c.callsMu.Lock()
	c.calls--
	if c.draining {
		c.since = time.Now()
	}
	c.maybeCut()
	c.callsMu.Unlock()
}

// unread counts a stream whose client reads no answers at shutdown (+1),
// or no longer (-1).
func (c *grpcConn) unread(d int) {
	c.callsMu.Lock()
	c.unreads += d
	c.maybeCut()
	c.callsMu.Unlock()
}

// maybeCut closes the connection at shutdown when no call on it is still
// being answered and the last answers had sendWait to go out (drain),
// nothing written to the client for as long (controlWrite): one whose
// reads open its HTTP/2 window at least that often gets them all. A call still being answered is not cut: its answer, not the
// connection's end, tells its client whether its records were written.
func (c *grpcConn) maybeCut() {
	if c.cut || !c.draining || c.unreads < c.calls {
		return
	}
	since := c.since
	if w := time.Unix(0, c.wrote.Load()); w.After(since) {
		since = w
	}
	if wait := time.Until(since.Add(c.l.sendWait)); wait > 0 {
		if !c.armed {
			c.armed = true
			time.AfterFunc(wait, c.recheck)
		}
		return
	}
	c.cut = true
	c.Conn.Close()
}

func (c *grpcConn) recheck() {
	c.callsMu.Lock()
	c.armed = false
	c.maybeCut()
	c.callsMu.Unlock()
}

func (c *grpcConn) Write(b []byte) (int, error) {
	if !c.checked.Load() {
		c.mu.Lock()
		if !c.checked.Load() {
			c.held = append(c.held, b...)
			c.mu.Unlock()
			return len(b), nil
		}
		c.mu.Unlock()
	}
	n, err := c.Conn.Write(b)
	if n > controlWrite && c.noting.Load() {
		c.wrote.Store(time.Now().UnixNano())
	}
	return n, err
}

// controlWrite is the longest write that carries HTTP/2 control frames
// only, not answers: the ack of a client's PING (17 bytes; 39 to 69 in a
// TLS record, CBC suites of TLS 1.2 the longest), a WINDOW_UPDATE, a
// SETTINGS ack, or a few of them flushed together. A client that reads no answers but pings (kproxy permits it
// every 5 s) takes nothing: those acks do not delay its cut (drain). An
// answer a client takes once its window was full goes out in writes of
// its window's updates, kilobytes (grpc-go's clients: a quarter of the
// window), and its trailer is longer too.
const controlWrite = 128

// SetDeadline is grpc-go's: it clears the deadline of the handshake once
// the connection is its (handleRawConn).
func (c *grpcConn) SetDeadline(t time.Time) error {
	if t.IsZero() {
		c.l.started(c)
	}
	return c.Conn.SetDeadline(t)
}

func (c *grpcConn) Close() error {
	c.l.closed(c)
	return c.Conn.Close()
}

func (c *grpcConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n == 0 || c.checked.Load() {
		return n, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	got := b[:n]
	if len(c.first) < 8 {
		c.first = append(c.first, got[:min(len(got), 8-len(c.first))]...)
	}
	ok, done := c.check(got)
	if !ok {
		c.readFirst()
		c.refuse()
		return 0, errNotGRPC
	}
	if done {
		if len(c.held) > 0 {
			if _, werr := c.Conn.Write(c.held); werr != nil {
				return 0, werr
			}
		}
		c.held = nil
		c.checked.Store(true)
	}
	return n, err
}

// readFirst reads the client's next bytes, when those read could still be
// the start of an HTTP/1 request line (capital letters, fewer than 5, no
// space: "PO", "GET"), until they tell (isHTTP1): an HTTP/1 request sent in
// short segments gets its 400 as one sent at once. The wait is grpc-go's
// for the handshake (idle_timeout_ms), and ends at shutdown (stop).
func (c *grpcConn) readFirst() {
	var b [8]byte
	for undecided(c.first) {
		n, err := c.Conn.Read(b[:8-len(c.first)])
		c.first = append(c.first, b[:n]...)
		if err != nil {
			return
		}
	}
}

// undecided tells whether first, a client's first bytes, may still start
// an HTTP/1 request line, or not, by what follows.
func undecided(first []byte) bool {
	if len(first) == 0 || len(first) >= 5 {
		return false
	}
	for _, b := range first {
		if b < 'A' || b > 'Z' {
			return false // a space decides; anything else is not HTTP/1
		}
	}
	return true
}

// check tells whether got, the client's next bytes, are what a gRPC
// client sends first, and whether that is settled.
func (c *grpcConn) check(got []byte) (ok, done bool) {
	if c.l.tls {
		return c.first[0] == 0x16, true // a TLS handshake record
	}
	want := http2.ClientPreface[c.seen:]
	m := min(len(want), len(got))
	if !bytes.Equal(got[:m], []byte(want[:m])) {
		return false, true
	}
	c.seen += m
	return true, c.seen == len(http2.ClientPreface)
}

// refuse logs why the client is not served and, to an HTTP/1 request,
// answers 400 with the reason; then grpc-go closes the connection. What
// grpc-go wrote is dropped, never sent.
func (c *grpcConn) refuse() {
	c.held = nil
	why := "neither the HTTP/2 preface nor a TLS handshake"
	tlsNote := ""
	if c.l.tls {
		tlsNote = " over TLS"
		why = "not a TLS handshake: this port speaks gRPC over TLS only"
	}
	switch {
	case isHTTP1(c.first):
		why = "an HTTP/1 request: this port speaks gRPC (HTTP/2)" + tlsNote + " only"
	case c.first[0] == 0x16 && !c.l.tls:
		why = "a TLS handshake: this port speaks gRPC without TLS (tls_cert_file is not set)"
	case bytes.HasPrefix([]byte(http2.ClientPreface), c.first) && c.l.tls:
		why = "HTTP/2 without TLS: this port speaks gRPC over TLS only"
	}
	c.l.log.warn("grpc_port: a client that does not speak grpc; closed", "client", c.Conn.RemoteAddr().String(), "reason", why, "first_bytes", string(c.first))
	if isHTTP1(c.first) {
		answer := "this port speaks gRPC (HTTP/2)" + tlsNote + " only: use a gRPC client\n"
		c.Conn.SetWriteDeadline(time.Now().Add(c.l.plain.writeTimeout))
		if _, err := io.WriteString(c.Conn, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"+
			"Content-Length: "+strconv.Itoa(len(answer))+"\r\n\r\n"+answer); err == nil {
			// The rest of the request read and dropped, so that the
			// close does not reset the answer (plainAnswer).
			c.l.plain.linger.close(c.Conn, c.Conn.Close)
		}
	}
}

// isHTTP1 tells whether first, a client's first bytes, start an HTTP/1
// request line (a method: capital letters, then a space).
func isHTTP1(first []byte) bool {
	if len(first) == 0 || first[0] < 'A' || first[0] > 'Z' {
		return false
	}
	for _, b := range first[1:] {
		switch {
		case b == ' ':
			return !bytes.HasPrefix([]byte(http2.ClientPreface), first) // "PRI " is HTTP/2's
		case b < 'A' || b > 'Z':
			return false
		}
	}
	return len(first) >= 5 && looksLikeHTTP([5]byte(first[:5]))
}

// loggedTLS is grpc_port's TLS credentials, logging the clients they
// refuse (grpc-go logs them only to its own logger, off): a handshake
// that failed, or a client that negotiated no ALPN protocol (HTTPS at
// HTTP/1.1, whose ALPN offers no h2; an old client), refused by grpc-go
// after the handshake. Not logged: a client that sent nothing (a TCP
// probe, closed or reset; one idle until the handshake's timeout), or one
// grpcConn logged.
type loggedTLS struct {
	credentials.TransportCredentials
	log *sampled
}

func (c loggedTLS) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errNotGRPC) && !silent(raw) {
		c.log.warn("grpc_port: a tls client refused; closed", "client", raw.RemoteAddr().String(), "reason", err.Error())
	}
	return conn, info, err
}

// silent tells whether raw, a connection of grpc_port, has read nothing
// from its client.
func silent(raw net.Conn) bool {
	c, ok := raw.(*grpcConn)
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.first) == 0
}

func (c loggedTLS) Clone() credentials.TransportCredentials {
	return loggedTLS{c.TransportCredentials.Clone(), c.log}
}
