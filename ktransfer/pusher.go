package ktransfer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/jsonscan"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/msgpackscan"
)

// maxRetryAfter caps a backend's Retry-After.
const maxRetryAfter = 5 * time.Minute

// idleConnTimeout is how long a keep-alive connection to a backend stays
// open unused. fasthttp closes them with a goroutine per backend that
// sleeps up to this long and cannot be woken: a stopped run's ends this
// long after its connections were closed (pusher.closeIdle). It is also
// under the keep-alive timeout of common servers (5 s for Apache httpd and
// Node.js), so that ktransfer, not the backend, closes an idle connection.
const idleConnTimeout = 4 * time.Second

// answerBodyRead is how much of a push's answer body is read: only its
// status and headers are used. A body that ends within it leaves the
// connection reusable; a longer one (or one that never ends) is not read
// further, and its connection is closed.
const answerBodyRead = 64 << 10

// answerHeadRead bounds an answer's status line and headers (the HTTP
// client's read buffer, which a connection holds only while it reads an
// answer). fasthttp's default, 4 KiB, failed a 2xx answer with a few
// cookies or a content security policy as a transport error: the record
// was pushed again and again. Larger headers fail the attempt unless its
// status line says 2xx (acceptedHead).
const answerHeadRead = 64 << 10

// errAnswerHeadTooLarge is an attempt's error when the answer's status line
// and headers pass answerHeadRead.
var errAnswerHeadTooLarge = errors.New("answer's status line and headers over 64 KiB")

// The names of the headers every push has, as fasthttp's Set would send
// them, and the replay header's value.
var (
	hdrTopic            = []byte("X-Kafka-Topic")
	hdrPartition        = []byte("X-Kafka-Partition")
	hdrOffset           = []byte("X-Kafka-Offset")
	hdrEpoch            = []byte("X-Ktransfer-Epoch")
	hdrReplay           = []byte("X-Ktransfer-Replay")
	hdrWebhookID        = []byte("Webhook-Id")
	hdrWebhookTimestamp = []byte("Webhook-Timestamp")
	hdrWebhookSignature = []byte("Webhook-Signature")
	one                 = []byte("1")
)

// pusher POSTs records to a module's backend servers.
type pusher struct {
	topic    string
	topicV   []byte // topic, the X-Kafka-Topic value
	tmpl     *template
	host     string // the configured Host header, or ""
	headers  [][2]string
	backends []*fasthttp.HostClient // per backend_servers entry; one listed twice shares its client
	addrs    []string               // per entry, as listed: the default Host
	next     atomic.Uint32          // round robin

	conns connSet // every open connection to the backends

	signer       *signer        // nil: pushes are not signed
	targetHeader string         // protocol.target_header, or ""
	allowed      map[string]int // backend_servers normalized: the targets allowed
}

// pusherFor is newPusher for a module's run: m's secretsDigest is set to
// the digest of the signing keys the pusher read, so that what a reload
// compares with the files is what signs.
func pusherFor(m *Module) (*pusher, error) {
	p, err := newPusher(*m)
	if err == nil && p.signer != nil {
		m.secretsDigest = config.SecretsDigest(p.signer.keys)
	}
	return p, err
}

func newPusher(m Module) (*pusher, error) {
	tmpl, err := parseTemplate(m.Protocol.URI)
	if err != nil {
		return nil, fmt.Errorf("%s: protocol.uri: %w", m.File, err)
	}
	p := &pusher{topic: m.Topic, topicV: []byte(m.Topic), tmpl: tmpl, targetHeader: m.Protocol.TargetHeader, allowed: allowList(m.BackendServers)}
	if len(m.Protocol.SigningSecrets) > 0 {
		problems := config.NewProblems(m.File)
		keys := m.signingKeys
		if keys == nil || !slices.Equal(m.keysOf, m.Protocol.SigningSecrets) {
			keys = signingKeys(problems, m.Protocol.SigningSecrets)
		}
		p.signer = &signer{keys: keys}
		if err := problems.Err(); err != nil {
			return nil, err
		}
	}
	for _, h := range m.Protocol.Headers {
		for k, v := range h {
			if strings.EqualFold(k, "Host") {
				p.host = v
				continue
			}
			if m.pushSets(k) {
				continue // warned of (noEffect)
			}
			p.headers = append(p.headers, [2]string{k, v})
		}
	}
	conn := time.Duration(m.Protocol.ConnTimeoutMs) * time.Millisecond
	// A backend listed twice (twice the share) is one backend, with one
	// pool of at most worker_num connections, as it has one breaker.
	clients := map[string]*fasthttp.HostClient{}
	for _, b := range m.BackendServers {
		key := b
		if host, port, err := net.SplitHostPort(b); err == nil {
			if hp, ok := normalHostPort(host, port); ok {
				key = hp
			}
		}
		p.addrs = append(p.addrs, b)
		if hc := clients[key]; hc != nil {
			p.backends = append(p.backends, hc)
			continue
		}
		hc := &fasthttp.HostClient{
			Addr:                          b,
			MaxConns:                      m.WorkerNum, // a worker has one request at a time
			ReadTimeout:                   time.Duration(m.Protocol.ReadTimeoutMs) * time.Millisecond,
			WriteTimeout:                  time.Duration(m.Protocol.WriteTimeoutMs) * time.Millisecond,
			MaxIdleConnDuration:           idleConnTimeout,
			NoDefaultUserAgentHeader:      true,
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
			// A push's answer is read whole up to answerBodyRead: a
			// longer one (a backend's page, or a body that never ends)
			// is not read further, its connection closed, and its
			// status kept (push). Buffered, not streamed: a stream costs
			// several allocations per push.
			MaxResponseBodySize: answerBodyRead,
			ReadBufferSize:      answerHeadRead,
			// An answer whose head cannot be read is not quoted in the
			// error (fasthttp's default: its first and last 200 bytes,
			// cookies included), which is logged at every retry.
			SecureErrorLogMessage: true,
			// Notes which connection each push of a claim uses, so that a
			// release can end one it abandons (abandon).
			Transport: pushTransport{&p.conns, conn},
		}
		// A push connects before it takes a connection (RoundTrip): a
		// connect of a released partition's push is given up (abandon),
		// which one inside fasthttp's pool could not be. The pool takes
		// what a push connected; with none, the push connects first.
		hc.Dial = func(string) (net.Conn, error) {
			c := p.conns.take(hc)
			if c == nil {
				return nil, errConnectFirst
			}
			return p.conns.add(c), nil
		}
		clients[key] = hc
		p.backends = append(p.backends, hc)
	}
	return p, nil
}

// closeIdle closes the backends' idle connections: those of a run whose
// workers are done, which will push no more.
func (p *pusher) closeIdle() {
	for _, b := range p.backends {
		b.CloseIdleConnections()
	}
}

// closeAll closes every connection to the backends, those in use too: a
// push still waiting for its answer (read_timeout_ms 0: no limit) ends with
// an error. For a run that abandoned its pushes; else they held their
// worker, the run and the connection for ever, one more for each reload.
func (p *pusher) closeAll() { p.conns.closeAll() }

// abandon closes the connections the pushes of part, released, are using:
// they end with an error (their records stay uncommitted) and give their
// workers back. Else a push without an answer (read_timeout_ms 0) held its
// worker for ever, and the partitions left had one worker less.
func (p *pusher) abandon(part *partition) { p.conns.abandon(part) }

// connSet is the open connections of a pusher, and which claim's push uses
// each.
type connSet struct {
	mu      sync.Mutex
	conns   map[*trackedConn]struct{}
	pushes  map[*fasthttp.Request]*partition // the requests of claims' pushes in progress
	dialing map[chan struct{}]*partition     // pushes connecting: closed to give the connect up (nil partition: a replay's)
	ready   map[*fasthttp.HostClient][]net.Conn
}

// connect runs dial for req's push, and gives it up (errPushAbandoned)
// when abandon or closeAll is called for the push's partition meanwhile;
// a connection made after that is closed.
func (s *connSet) connect(req *fasthttp.Request, dial func() (net.Conn, error)) (net.Conn, error) {
	s.mu.Lock()
	part := s.pushes[req]
	if part != nil && part.released.Load() {
		s.mu.Unlock()
		return nil, errPushAbandoned
	}
	stop := make(chan struct{})
	if s.dialing == nil {
		s.dialing = map[chan struct{}]*partition{}
	}
	s.dialing[stop] = part
	s.mu.Unlock()
	type dialed struct {
		c   net.Conn
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		c, err := dial()
		done <- dialed{c, err}
	}()
	select {
	case d := <-done:
		s.mu.Lock()
		delete(s.dialing, stop)
		s.mu.Unlock()
		if f := afterConnect.Load(); f != nil && part != nil {
			(*f)(part)
		}
		return d.c, d.err
	case <-stop:
		go func() {
			if d := <-done; d.c != nil {
				_ = d.c.Close()
			}
		}()
		return nil, errPushAbandoned
	}
}

// afterConnect, when a test sets it, runs once a push's connect returned,
// with its partition (as a process paused while it connected).
var afterConnect atomic.Pointer[func(*partition)]

// offer hands c, just connected, to hc's pool: its dial takes it.
func (s *connSet) offer(hc *fasthttp.HostClient, c net.Conn) {
	s.mu.Lock()
	if s.ready == nil {
		s.ready = map[*fasthttp.HostClient][]net.Conn{}
	}
	s.ready[hc] = append(s.ready[hc], c)
	s.mu.Unlock()
}

// take is a connection offered to hc's pool, or nil.
func (s *connSet) take(hc *fasthttp.HostClient) net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.ready[hc]
	if len(cs) == 0 {
		return nil
	}
	c := cs[len(cs)-1]
	cs[len(cs)-1] = nil
	s.ready[hc] = cs[:len(cs)-1]
	return c
}

// withdraw closes c unless hc's pool took it.
func (s *connSet) withdraw(hc *fasthttp.HostClient, c net.Conn) {
	s.mu.Lock()
	cs := s.ready[hc]
	i := slices.Index(cs, c)
	if i >= 0 {
		s.ready[hc] = slices.Delete(cs, i, i+1)
	}
	s.mu.Unlock()
	if i >= 0 {
		_ = c.Close()
	}
}

// stopDialing gives up the connects of part's pushes, or every connect
// when all.
func (s *connSet) stopDialing(part *partition, all bool) {
	for stop, p := range s.dialing {
		if all || p == part {
			close(stop)
			delete(s.dialing, stop)
		}
	}
}

// begin notes that req is a push of part's.
func (s *connSet) begin(req *fasthttp.Request, part *partition) {
	s.mu.Lock()
	if s.pushes == nil {
		s.pushes = map[*fasthttp.Request]*partition{}
	}
	s.pushes[req] = part
	s.mu.Unlock()
}

// end forgets req.
func (s *connSet) end(req *fasthttp.Request) {
	s.mu.Lock()
	delete(s.pushes, req)
	s.mu.Unlock()
}

// use notes that req is sent on conn; errPushAbandoned when req's
// partition was released meanwhile, errPushNotFresh when ZooKeeper has
// not answered within the session grace since the push was chosen (the
// process was paused while it connected: another may hold the partition
// now, and the session watcher has not run yet): it is not sent (abandon
// may have looked already).
func (s *connSet) use(conn net.Conn, req *fasthttp.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	part := s.pushes[req]
	if part == nil {
		return nil // a replayed dead letter: no claim
	}
	if part.released.Load() {
		return errPushAbandoned
	}
	if part.m != nil && !part.m.zkFresh(part) {
		return errPushNotFresh
	}
	if tc, ok := conn.(*trackedConn); ok {
		tc.part = part
	}
	return nil
}

// unuse notes that conn carries no push any more, before it goes back to
// its pool or is closed; true when abandon closed it: it must not go back.
func (s *connSet) unuse(conn net.Conn) (closed bool) {
	tc, ok := conn.(*trackedConn)
	if !ok {
		return false
	}
	s.mu.Lock()
	tc.part = nil
	closed = tc.abandoned
	s.mu.Unlock()
	return closed
}

func (s *connSet) abandon(part *partition) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopDialing(part, false)
	for c := range s.conns {
		if c.part == part {
			c.abandoned = true // its push may have read its answer already: not pooled again
			_ = c.Conn.Close() // the push's Close (trackedConn's) removes it from the set
		}
	}
}

func (s *connSet) add(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, set: s, peek: newPeeker(c)}
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[*trackedConn]struct{}{}
	}
	s.conns[tc] = struct{}{}
	s.mu.Unlock()
	return tc
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.stopDialing(nil, true)
	all := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		all = append(all, c)
	}
	s.mu.Unlock()
	for _, c := range all {
		_ = c.Close()
	}
}

// trackedConn leaves its set when closed.
type trackedConn struct {
	net.Conn
	set       *connSet
	part      *partition // whose push it carries, or nil (under set.mu)
	abandoned bool       // closed by abandon (under set.mu)
	pooled    bool       // went back to the pool after an answer: checked before it is used again (RoundTrip)
	peek      *peeker    // that check
	idleSince time.Time  // when it went back to the pool
}

// errPushAbandoned is a push's error when its partition was released
// before it was sent.
var errPushAbandoned = errors.New("partition released: push abandoned")

// errPushNotFresh is a push's error when ZooKeeper went silent between
// its choice and its write (connSet.use): not sent, and not the backend's
// failure; chosen again once ZooKeeper answers (mayPush).
var errPushNotFresh = errors.New("ZooKeeper silent for the session grace: push not sent")

// pushTransport is fasthttp's default transport for the pushes (a
// request and its answer read whole, up to MaxResponseBodySize), which
// notes the connection each push of a claim uses (connSet.use): a release
// that abandons a push closes it (connSet.abandon).
type pushTransport struct {
	set     *connSet
	timeout time.Duration // conn_timeout_ms; 0: none
}

// errConnectFirst is the pool's dial when no push connected for it
// (RoundTrip then connects).
var errConnectFirst = errors.New("no connection ready: the push connects first")

// dial connects to addr. Dual stack: fasthttp's Dial and DialTimeout reach
// IPv4 addresses only, and a backend_servers entry [::1]:8080 loaded and
// was never reached (every push a connection error).
func (t pushTransport) dial(addr string) (net.Conn, error) {
	if t.timeout > 0 {
		return fasthttp.DialDualStackTimeout(addr, t.timeout)
	}
	return fasthttp.DialDualStack(addr)
}

func (t pushTransport) RoundTrip(hc *fasthttp.HostClient, req *fasthttp.Request, resp *fasthttp.Response) (retry bool, err error) {
	// A pooled connection idle for peekIdleAfter is taken only when
	// nothing waits to be read on it. Bytes there are an answer no push
	// asked for (which this push would read as its own), the end of the
	// stream a backend that closed it while idle (this push would fail
	// on it): either is closed and the next taken, until a clean or a
	// new one. With none pooled, the push connects (connSet.connect: a
	// release abandoning the push ends the connect) and the pool takes
	// the connection; the pool's own dial, in this goroutine, could not
	// be ended.
	cc, err := hc.AcquireConn(0, req.ConnectionClose())
	for {
		if errors.Is(err, errConnectFirst) {
			var c net.Conn
			if c, err = t.set.connect(req, func() (net.Conn, error) { return t.dial(hc.Addr) }); err != nil {
				break
			}
			t.set.offer(hc, c)
			cc, err = hc.AcquireConn(0, req.ConnectionClose())
			t.set.withdraw(hc, c) // another push's, or a pooled one, taken instead: closed
			continue
		}
		if err != nil {
			break
		}
		if tc, ok := cc.Conn().(*trackedConn); !ok || !tc.pooled || time.Since(tc.idleSince) < peekIdleAfter || !tc.peek.pending() {
			break
		}
		hc.CloseConn(cc)
		cc, err = hc.AcquireConn(0, req.ConnectionClose())
	}
	if err != nil {
		return false, err
	}
	conn := cc.Conn()
	if err := t.set.use(conn, req); err != nil {
		hc.ReleaseConn(cc)
		return false, err
	}
	reuse := false
	defer func() {
		// Before another push may take it; one a release closed meanwhile
		// is closed, not pooled, whatever the answer read.
		if t.set.unuse(conn) {
			reuse = false
		}
		if reuse {
			if tc, ok := conn.(*trackedConn); ok {
				tc.pooled, tc.idleSince = true, time.Now()
			}
			hc.ReleaseConn(cc)
		} else {
			hc.CloseConn(cc)
		}
	}()
	resp.ParseNetConn(conn)
	var deadline time.Time
	if hc.WriteTimeout > 0 {
		deadline = time.Now().Add(hc.WriteTimeout)
	}
	if err = conn.SetWriteDeadline(deadline); err != nil {
		return true, err
	}
	bw := hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	hc.ReleaseWriter(bw)
	if x, ok := err.(interface{ Timeout() bool }); ok && x.Timeout() {
		err = fasthttp.ErrTimeout
	}
	if err != nil {
		if earlyAnswer(hc, conn, resp) {
			return false, nil // closed (reuse false): the rest of the request was not sent
		}
		return true, err
	}
	deadline = time.Time{}
	if hc.ReadTimeout > 0 {
		deadline = time.Now().Add(hc.ReadTimeout)
	}
	if err = conn.SetReadDeadline(deadline); err != nil {
		return true, err
	}
	// The answer's header names are normalized (RoundTrip reads the
	// answer itself: the client's DisableHeaderNamesNormalizing, which
	// applies to answers only, is not applied here): push peeks
	// Retry-After, which a backend may write in any case.
	br := hc.AcquireReader(conn)
	defer hc.ReleaseReader(br)
	if err = readHead(resp, br); err != nil {
		if code := acceptedHead(br); code != 0 {
			// The status line, whole, says 2xx; the headers after it do
			// not parse (Content-Length twice, a control byte, over 64
			// KiB) or were cut. The backend took the record: a push, not
			// one to send again. The connection is closed (reuse false):
			// where this answer ends is not known.
			resp.SetStatusCode(code)
			return false, nil
		}
		return true, err
	}
	// The status and headers are the answer: whatever becomes of the
	// body, a 2xx is a push (DESIGN: success = a 2xx), not a failure
	// to send again. The body only decides whether the connection is
	// used again: one not read whole within answerBodyWait (or what is
	// left of read_timeout_ms), cut, or longer than answerBodyRead is
	// closed.
	if cl := resp.Header.ContentLength(); cl != 0 && !bodyless(resp) {
		// -1: chunked, -2: until the connection closes, else its length.
		if cl < 0 || cl > br.Buffered() {
			if limit := time.Now().Add(answerBodyWait); deadline.IsZero() || limit.Before(deadline) {
				if conn.SetReadDeadline(limit) != nil {
					return false, nil
				}
			}
		}
		if resp.ReadBody(br, hc.MaxResponseBodySize) != nil {
			return false, nil
		}
		if cl == -1 && resp.Header.ReadTrailer(br) != nil {
			return false, nil
		}
	}
	// Bytes after the answer are none of this push's: an answer no
	// request asked for, which the next push on this connection would
	// take for its own. After a 101 the connection speaks another
	// protocol.
	reuse = br.Buffered() == 0 && !req.ConnectionClose() && !resp.ConnectionClose() &&
		resp.StatusCode() != fasthttp.StatusSwitchingProtocols
	return false, nil
}

// earlyAnswer reads into resp a refusal the backend sent before it read
// the whole request, once the request's write failed (the backend closed
// the connection under it, or stopped reading until write_timeout_ms):
// nginx over client_max_body_size, or a handler that answers without
// reading the body, answer 413 or 400 and close. That answer (4xx or 5xx)
// is the push's: a permanent refusal is given up at once, not retried as
// a connection error. A 2xx is not taken: the backend had only part of
// the body, and the push is sent again. It reports whether there was such
// an answer, waiting for it at most earlyAnswerWait (or read_timeout_ms
// when shorter).
func earlyAnswer(hc *fasthttp.HostClient, conn net.Conn, resp *fasthttp.Response) bool {
	wait := earlyAnswerWait
	if hc.ReadTimeout > 0 {
		wait = min(wait, hc.ReadTimeout)
	}
	if conn.SetReadDeadline(time.Now().Add(wait)) != nil {
		return false
	}
	br := hc.AcquireReader(conn)
	defer hc.ReleaseReader(br)
	if readHead(resp, br) != nil || resp.StatusCode() < 400 {
		resp.Header.Reset()
		return false
	}
	return true
}

// earlyAnswerWait bounds the wait for an answer once a push's write failed.
const earlyAnswerWait = 100 * time.Millisecond

// peekIdleAfter is how long a connection sits in the pool before it is
// checked for bytes waiting (RoundTrip): the check is a system call, 1.7
// µs a push at full rate, where connections go back and out again within
// microseconds; and bytes that come after a push was written on it (an
// answer no push asked for, a moment too late for the check) are taken
// for its answer whatever is checked: HTTP/1.1 answers carry no request's
// name.
const peekIdleAfter = time.Millisecond

// answerBodyWait bounds the read of an answer's body once its status and
// headers came, whatever read_timeout_ms (0: none): the body decides
// nothing, and a backend that answered 200 and then stalls must neither
// hold a worker nor have the record pushed again.
const answerBodyWait = time.Second

// readHead reads an answer's status line and headers, past interim (1xx)
// answers. A status 000 is an error: fasthttp reads it as 0 and its
// StatusCode() answers 200 for 0, which a push would take for a 2xx.
func readHead(resp *fasthttp.Response, br *bufio.Reader) error {
	for range maxInterim {
		peekStatusLine(br)
		zero := statusZero(br)
		if err := resp.Header.Read(br); err != nil {
			return err
		}
		if zero {
			return errStatusZero
		}
		if c := resp.StatusCode(); c < 100 || c > 199 || c == fasthttp.StatusSwitchingProtocols {
			return nil
		}
	}
	return errTooManyInterim
}

// peekStatusLine waits until br holds an answer's status line whole
// (after the empty lines fasthttp skips), its buffer is full or a read
// fails (Header.Read then meets the error): statusZero looks at what is
// buffered, and a status line sent in two writes ("HTTP/1.1 ", then "000
// ...") was looked at cut, and its 000 taken for a 200.
func peekStatusLine(br *bufio.Reader) {
	for n := 1; n <= br.Size(); n = br.Buffered() + 1 {
		if _, err := br.Peek(n); err != nil {
			return
		}
		b, _ := br.Peek(br.Buffered())
		if b = bytes.TrimLeft(b, "\r\n"); bytes.IndexByte(b, '\n') >= 0 {
			return
		}
	}
}

// errStatusZero: an answer's status line says 000.
var errStatusZero = errors.New("answer with status 000")

// statusZero reports whether the answer br holds the start of says
// "HTTP/1.x 000" (after empty lines, as fasthttp reads it).
func statusZero(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	b = bytes.TrimLeft(b, "\r\n")
	if end := bytes.IndexByte(b, '\n'); end >= 0 {
		b = b[:end]
	}
	_, rest, ok := bytes.Cut(b, []byte(" "))
	rest = bytes.TrimLeft(rest, " ")
	return ok && bytes.HasPrefix(rest, []byte("000")) && (len(rest) == 3 || !isDigit(rest[3]))
}

// acceptedHead is the status of an answer whose head failed to parse when
// what br holds of it begins with a whole status line of a 2xx answer
// ("HTTP/1.x 2xx …", after empty lines, as fasthttp reads them), else 0.
func acceptedHead(br *bufio.Reader) int {
	b, _ := br.Peek(br.Buffered())
	b = bytes.TrimLeft(b, "\r\n")
	end := bytes.IndexByte(b, '\n')
	if end < 0 {
		return 0 // the status line is not whole
	}
	line := bytes.TrimRight(b[:end], "\r")
	proto, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(proto) != len("HTTP/1.1") || !bytes.HasPrefix(proto, []byte("HTTP/1.")) || !isDigit(proto[7]) {
		return 0
	}
	rest = bytes.TrimLeft(rest, " ")
	if len(rest) < 3 || rest[0] != '2' || !isDigit(rest[1]) || !isDigit(rest[2]) || (len(rest) > 3 && rest[3] != ' ') {
		return 0
	}
	return 200 + int(rest[1]-'0')*10 + int(rest[2]-'0')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// maxInterim bounds the interim answers before a final one.
const maxInterim = 100

var errTooManyInterim = errors.New("more than 100 interim (1xx) answers")

// bodyless tells an answer that has no body whatever its headers say.
func bodyless(resp *fasthttp.Response) bool {
	c := resp.StatusCode()
	return c < 200 || c == fasthttp.StatusNoContent || c == fasthttp.StatusNotModified
}

func (c *trackedConn) Close() error {
	c.set.mu.Lock()
	delete(c.set.conns, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}

// start returns the backend index a record's first attempt goes to.
func (p *pusher) start() int { return int(p.next.Add(1)-1) % len(p.backends) }

// attempt is one push's outcome.
type attempt struct {
	status     int           // HTTP status, 0 when none was received
	err        error         // transport error
	retryAfter time.Duration // from a Retry-After header
}

// varsOf is what r's uri is rendered from: the push's, and the check of
// its path (dotSegment), which read the numbers as 0 before.
func (p *pusher) varsOf(r *record) uriVars {
	var epoch int64 // 0 for a replayed dead letter: it comes from no claim
	if r.part != nil {
		epoch = r.part.epoch
	}
	return uriVars{topic: p.topic, key: r.msg.Key, offset: r.msg.Offset, partition: r.msg.Partition, epoch: epoch, method: r.method}
}

// push POSTs one record to backend i.
func (p *pusher) push(i int, r *record, buf *[]byte) attempt {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	if r.target != nil {
		req.SetRequestURI(r.target.uri)
	} else {
		// In the absolute form: a rendered path starting with // (a
		// keyless record's empty {#KEY} first, a uri starting //)
		// would be read as naming a host, which replaced the Host and
		// was cut from the path. The backend's address stands in the
		// URL; the Host sent is the one set below (UseHostHeader).
		*buf = append(append((*buf)[:0], "http://"...), p.addrs[i]...)
		*buf = p.tmpl.render(*buf, p.varsOf(r))
		req.SetRequestURIBytes(*buf)
	}
	req.UseHostHeader = true
	req.Header.SetMethod(fasthttp.MethodPost)
	switch {
	case r.target != nil:
		req.Header.SetHost(r.target.host)
	case p.host != "":
		req.Header.SetHost(p.host)
	default:
		req.Header.SetHost(p.addrs[i])
	}
	for _, h := range p.headers {
		req.Header.Set(h[0], h[1])
	}
	// The fixed names are set as they are (fasthttp's normalized form):
	// Set would copy and clean each name, and each value twice.
	var num [20]byte
	req.Header.SetCanonical(hdrTopic, p.topicV)
	req.Header.SetCanonical(hdrPartition, strconv.AppendInt(num[:0], int64(r.msg.Partition), 10))
	req.Header.SetCanonical(hdrOffset, strconv.AppendInt(num[:0], r.msg.Offset, 10)) // copied: no allocation
	if r.part != nil {
		// The owner's epoch: a backend that keeps the highest one per
		// partition can refuse a push from a process that lost the partition.
		req.Header.SetCanonical(hdrEpoch, strconv.AppendInt(num[:0], r.part.epoch, 10))
	} else {
		req.Header.SetCanonical(hdrReplay, one)
	}
	if p.signer != nil {
		// Signed per attempt: the timestamp is this attempt's. buf holds
		// the URI no more (copied into req).
		ts := time.Now().Unix()
		*buf = appendID((*buf)[:0], r.msg.Topic, r.msg.Partition, r.msg.Offset)
		id := len(*buf)
		*buf = p.signer.appendSignature(*buf, (*buf)[:id], ts, r.msg.Value)
		req.Header.SetCanonical(hdrWebhookID, (*buf)[:id])
		req.Header.SetCanonical(hdrWebhookTimestamp, strconv.AppendInt(num[:0], ts, 10))
		req.Header.SetCanonical(hdrWebhookSignature, (*buf)[id:])
	}
	req.SetBodyRaw(r.msg.Value)
	if r.part != nil {
		p.conns.begin(req, r.part)
		defer p.conns.end(req)
	}
	if err := p.backends[i].Do(req, resp); err != nil {
		if small := (*fasthttp.ErrSmallBuffer)(nil); errors.As(err, &small) {
			// fasthttp's reason asks for a larger buffer, which no key sets.
			err = errAnswerHeadTooLarge
		}
		return attempt{err: err}
	}
	// The answer's status line and headers were read whole; its body,
	// not needed, may not have been (pushTransport).
	a := attempt{status: resp.StatusCode()}
	if a.status >= 200 && a.status < 300 {
		return a // pushed: a Retry-After would not be read
	}
	if ra := resp.Header.Peek("Retry-After"); len(ra) > 0 {
		a.retryAfter = parseRetryAfter(string(ra), time.Now())
	}
	return a
}

// verdict is what to do after an attempt.
type verdict int

const (
	pushed    verdict = iota
	retry             // try again, on the next backend
	permanent         // the backend refuses the record: given up at once only into a dead-letter topic
)

// judge is the one place that decides what a push's outcome means.
func judge(a attempt) (verdict, string) {
	switch {
	case a.err != nil:
		// Connection refused or reset, timeouts: the backend may be back soon.
		return retry, "transport: " + a.err.Error()
	case a.status >= 200 && a.status < 300:
		return pushed, ""
	case a.status == fasthttp.StatusRequestTimeout, a.status == fasthttp.StatusTooManyRequests:
		return retry, "status " + strconv.Itoa(a.status) // the backend asks to come back later
	case a.status >= 400 && a.status < 500:
		// Other 4xx: the backend refuses this record; sending it again would
		// likely be refused again (handle decides: dead-letter or retry).
		return permanent, "status " + strconv.Itoa(a.status)
	default:
		// 5xx: the backend failed, not the record. 1xx and 3xx (redirects
		// are not followed) say nothing against the record either.
		return retry, "status " + strconv.Itoa(a.status)
	}
}

// backoff is the wait before retry number n (1-based): the base doubled per
// retry, capped, with ±20% jitter so that workers do not retry in step —
// kept within [base, ceiling]: retries are never closer than
// fail_retry_interval_ms, nor farther apart than max_retry_interval_ms
// (the jitter made a first retry come after 0.8 × the interval).
func backoff(n int, base, ceiling time.Duration) time.Duration {
	d := base
	if d == 0 && ceiling > 0 {
		// fail_retry_interval_ms 0: the first retry at once, the next
		// ones doubling from 1 ms, not a worker spinning on a backend
		// that refuses at once.
		if n == 1 {
			return 0
		}
		d, n = time.Millisecond, n-1
	}
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	if d <= 0 {
		return 0
	}
	// Drawn evenly within the ±20% that lies inside [base, ceiling]:
	// clipped instead, half the first retries came at base and half of
	// those at the cap at the cap, in step. A cap at the interval leaves
	// no room: every retry at the interval.
	lo, hi := max(base, d-d/5), min(ceiling, d+d/5)
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rand.Int64N(int64(hi-lo)+1))
}

// parseRetryAfter reads delay-seconds or an HTTP date (any of the three
// forms RFC 9110 has recipients accept); 0 when absent or unreadable;
// capped at maxRetryAfter.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	n, err := strconv.Atoi(v)
	if errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(v, "-") {
		return maxRetryAfter // more seconds than an int holds
	}
	if err == nil {
		if n <= 0 {
			return 0
		}
		if n >= int(maxRetryAfter/time.Second) { // (and no overflow beyond)
			return maxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		// RFC 1123 with another zone than GMT ("UTC", "+0000"): not
		// HTTP's form, but some backends write it, and it was read.
		t, err = time.Parse(time.RFC1123, v)
	}
	if err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return 0
}

// methodOf reads the string at key "method" of a msgpack map, or of a JSON
// object (kproxy writes JSON bodies unchanged), without decoding the rest
// and without trusting its lengths. The two never meet: a msgpack map
// starts with 0x80-0x8f, 0xde or 0xdf, a JSON object with '{' after JSON
// white space, and those are one-byte msgpack integers, never a map. Of
// keys given twice, the first counts, in both.
func methodOf(value []byte) (string, error) {
	i := 0
	for i < len(value) && (value[i] == ' ' || value[i] == '\t' || value[i] == '\n' || value[i] == '\r') {
		i++
	}
	if i < len(value) && value[i] == '{' {
		return jsonMethod(value)
	}
	return msgpackscan.MapString(value, "method")
}

// errJSONNoMethod is methodOf's error for a JSON object without a string
// at "method".
var errJSONNoMethod = errors.New(`JSON object has no string at "method"`)

// jsonMethod is methodOf for a JSON object.
func jsonMethod(value []byte) (string, error) {
	var method string
	found := false
	err := jsonscan.Object(value, func(key, v []byte) error {
		if found {
			return nil
		}
		if k, err := jsonscan.String(key); err != nil || k != "method" {
			return nil
		}
		found = true
		m, err := jsonscan.String(v)
		if err != nil {
			return errJSONNoMethod
		}
		method = m
		return nil
	})
	switch {
	case err != nil:
		return "", err
	case !found:
		return "", errJSONNoMethod
	}
	return method, nil
}

// record is one Kafka record on its way through a module.
type record struct {
	msg    *kgo.Record
	part   *partition // nil for a replayed dead letter
	method string
	target *target // the record's own URL (protocol.target_header), or nil
}
