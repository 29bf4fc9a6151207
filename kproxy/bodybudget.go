package kproxy

import (
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// bodyFloor is the largest declared body read without being counted in
// max_body_bytes_in_flight: of the order of what any connection being
// served costs (its read and write buffers, its goroutine's stack), and
// above most records, so that the common request takes no lock.
const bodyFloor = 16 << 10

// bodyBudget bounds the memory of the request bodies fasthttp reads.
// fasthttp reads a body whole before the handler sees its request, into a
// buffer of the declared Content-Length (rounded up to a power of two: 16
// MiB for 10 MiB) allocated before the first byte comes, and a chunked
// body's chunk likewise from its declared size; headers alone, held to
// read_timeout_ms, pinned that much, on any number of connections. Each
// request declaring more than bodyFloor, and each chunked one (its chunks
// may declare up to max_request_size_bytes), holds its buffer's size from
// its headers (fasthttp's HeaderReceived: headerReceived) until its answer
// (handle, requestError, expect) or its connection's close; one that
// would pass max is refused (503 + Retry-After) before anything is
// allocated for its body. Once read, a request holds its buffer as
// allocated (resize). A body larger than max alone is taken when no other
// is held: max never refuses what max_request_size_bytes allows.
//
// A buffer given back leaves the request (dropBody): kept, it would
// outlive its hold — on the connection (release_idle_buffers false) or in
// fasthttp's pool of body buffers, from which any later request, however
// small its body, takes it.
//
// Holds are by request header, one per connection being served (fasthttp
// serves a connection's requests one after another, each in the
// connection's RequestCtx), and by connection: a new request's headers end
// what the connection's previous request held, should no answer have, and
// the connection's close what its last request held — fasthttp ends a
// connection without calling any handler when a chunked body's client
// closes cleanly between chunks (its io.EOF is no error to it), or when a
// 100 Continue cannot be written.
type bodyBudget struct {
	max int64

	mu     sync.Mutex
	used   int64
	holds  map[*fasthttp.RequestHeader]bodyHold
	byConn map[net.Conn]*fasthttp.RequestHeader // the same holds, by connection
	// held is len(holds), read without the lock: most requests hold
	// nothing, and their answer and connection have nothing to give back.
	held atomic.Int32
}

// bodyHold is what one request holds: n bytes, or, refused, none.
type bodyHold struct {
	n       int64
	refused bool
	conn    net.Conn
}

func newBodyBudget(max int) *bodyBudget {
	return &bodyBudget{max: int64(max), holds: map[*fasthttp.RequestHeader]bodyHold{}, byConn: map[net.Conn]*fasthttp.RequestHeader{}}
}

// bufferSize is the buffer fasthttp allocates for a body of n bytes
// (its roundUpForSliceCap): the next power of two up to 100 MiB, n above.
func bufferSize(n int) int64 {
	if n > 100<<20 {
		return int64(n)
	}
	size := int64(1)
	for size < int64(n) {
		size <<= 1
	}
	return size
}

// chunkedBuffer is the most fasthttp allocates for a chunked body of at
// most max bytes: a chunk's buffer is sized, before its data comes, for
// what the body holds, the chunk its line declares and the chunk's CRLF.
func chunkedBuffer(max int) int {
	if max > math.MaxInt-2 {
		return max
	}
	return int(bufferSize(max + 2))
}

// admit holds the buffer of a body of cl bytes for the request of h on
// conn, giving back first what h's previous request, or conn's, still
// held. It reports whether the request is refused: the bytes held with its
// buffer would pass max.
func (b *bodyBudget) admit(h *fasthttp.RequestHeader, conn net.Conn, cl int) (refused bool) {
	n := bufferSize(cl)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropLocked(h)
	if prev, ok := b.byConn[conn]; ok {
		b.dropLocked(prev)
	}
	refused = b.used > 0 && n > b.max-b.used // not b.used+n: n can be near the largest int64 (chunkedBuffer)
	if refused {
		n = 0
	}
	b.holds[h] = bodyHold{n: n, refused: refused, conn: conn}
	b.byConn[conn] = h
	b.held.Add(1)
	b.used += n
	return refused
}

// take holds n bytes of a body the HTTP server did not read (a gRPC
// message's copy: holdMessage) until give; false, nothing held, when they
// would pass max. One larger than max alone is taken when nothing else is
// held, as admit takes it.
func (b *bodyBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > 0 && n > b.max-b.used {
		return false
	}
	b.used += n
	return true
}

// give gives back n bytes take held.
func (b *bodyBudget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

// holdMessage counts the body of the gRPC message read into j (its copy,
// j.body) in max_body_bytes_in_flight until j is released, Kafka's
// client's hold on its records included (compact makes it the records'
// copy's); nil, or the refusal (503, not written) when it would pass.
// grpc-go reads a message before kproxy learns its size: unlike an HTTP
// body's, this one is refused once read, and it is what a message holds
// after that — the requests out, the records Kafka's client holds — that
// is bounded (a stream's once its waits are over: see start). A
// body of bodyFloor or less holds nothing, as over HTTP.
func (s *Server) holdMessage(j *batchJob) *batchError {
	n := int64(cap(j.body))
	if n <= bodyFloor {
		return nil
	}
	if !s.bodies.take(n) {
		e := refuse(503, -1, "overloaded: request bodies of max_body_bytes_in_flight ("+
			strconv.FormatInt(s.bodies.max, 10)+") bytes being read or handled; the request was not handled, nothing was written")
		e.retryAfter = 1
		return e
	}
	j.held, j.bodies = n, s.bodies
	return nil
}

// release gives back what the request of h holds and returns it.
func (b *bodyBudget) release(h *fasthttp.RequestHeader) bodyHold {
	if b.held.Load() == 0 {
		return bodyHold{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropLocked(h)
}

func (b *bodyBudget) dropLocked(h *fasthttp.RequestHeader) bodyHold {
	hold, ok := b.holds[h]
	if !ok {
		return bodyHold{}
	}
	delete(b.holds, h)
	b.held.Add(-1)
	b.used -= hold.n
	if b.byConn[hold.conn] == h {
		delete(b.byConn, hold.conn)
	}
	return hold
}

// resize makes what the request of h holds n bytes, the buffer its body
// was read into, when it holds any.
func (b *bodyBudget) resize(h *fasthttp.RequestHeader, n int64) {
	if b.held.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	hold, ok := b.holds[h]
	if !ok || hold.refused {
		return
	}
	b.used += n - hold.n
	hold.n = n
	b.holds[h] = hold
}

// refused reports whether the request of h was refused by admit.
func (b *bodyBudget) refused(h *fasthttp.RequestHeader) bool {
	if b.held.Load() == 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.holds[h].refused
}

// closed gives back what the last request of conn still holds.
func (b *bodyBudget) closed(conn net.Conn) {
	if b.held.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if h, ok := b.byConn[conn]; ok {
		b.dropLocked(h)
	}
}

// inUse is the bytes held (kproxy_body_bytes_in_flight).
func (b *bodyBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// headerReceived is fasthttp's HeaderReceived: called with a request's
// headers, before its body is read. A body declared over bodyFloor (and
// within max_request_size_bytes: above, fasthttp refuses it, 413, unread)
// holds its buffer in max_body_bytes_in_flight; one refused gets a body
// limit its length passes, so that fasthttp reads and allocates nothing
// for it and hands requestError ErrBodyTooLarge, answered 503 there (or,
// announced with Expect: 100-continue, by expect, without the 100).
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	ctx := requestCtxOf(h)
	if cap(ctx.Request.Body()) > dropAbove {
		// Kept with the connection's RequestCtx from a request no answer
		// ended (a chunked body's client closing between chunks) with
		// release_idle_buffers false: it would be this request's buffer,
		// uncounted.
		dropBody(ctx)
	}
	cl := h.ContentLength()
	switch {
	case cl == -1: // chunked: a chunk may declare up to max_request_size_bytes
		cl = chunkedBuffer(s.cfg.MaxRequestSizeBytes)
	case cl <= bodyFloor || cl > s.cfg.MaxRequestSizeBytes:
		return fasthttp.RequestConfig{}
	}
	if s.bodies.admit(h, ctx.Conn(), cl) {
		return fasthttp.RequestConfig{MaxRequestBodySize: 1}
	}
	return fasthttp.RequestConfig{}
}

// requestCtxOf is the RequestCtx whose request header h is: fasthttp
// (v1.74.0: serveConn, its one call) calls HeaderReceived with the header
// of the connection's RequestCtx (&ctx.Request.Header), and nothing of the
// connection beside it; TestRequestCtxOfItsHeader checks it of fasthttp's
// server.
func requestCtxOf(h *fasthttp.RequestHeader) *fasthttp.RequestCtx {
	var ctx *fasthttp.RequestCtx
	var req *fasthttp.Request
	return (*fasthttp.RequestCtx)(unsafe.Add(unsafe.Pointer(h), -int(unsafe.Offsetof(ctx.Request)+unsafe.Offsetof(req.Header))))
}

// bodiesOverloaded answers a request refused by max_body_bytes_in_flight.
func (s *Server) bodiesOverloaded(ctx *fasthttp.RequestCtx) int {
	ctx.Response.Header.Set("Retry-After", "1")
	return fail(ctx, fasthttp.StatusServiceUnavailable, "overloaded: request bodies of max_body_bytes_in_flight ("+
		strconv.FormatInt(s.bodies.max, 10)+") bytes being read or handled; the body was not read, nothing was written")
}

// bodyRead makes what the request of ctx holds the buffer its body was
// read into (a chunked body's is its own size, not the most its chunks
// could have declared).
func (s *Server) bodyRead(ctx *fasthttp.RequestCtx) {
	if s.bodies.held.Load() != 0 {
		s.bodies.resize(&ctx.Request.Header, int64(cap(ctx.Request.Body())))
	}
}

// bodyDone gives back what the request of ctx holds, and with it the
// buffer of its body when it is over dropAbove (dropBody) — also one a
// request holding nothing took from fasthttp's pool, put there by a
// request no answer ended (its connection's close gave its hold back).
func (s *Server) bodyDone(ctx *fasthttp.RequestCtx) bodyHold {
	hold := s.bodies.release(&ctx.Request.Header)
	if hold.n > dropAbove || cap(ctx.Request.Body()) > dropAbove {
		dropBody(ctx)
	}
	return hold
}

// dropAbove is the largest body buffer given back to fasthttp for another
// request: smaller ones cost a connection that takes one little more than
// its own buffers, and are not allocated anew for every batch of a few
// hundred records.
const dropAbove = 64 << 10

// dropBody lets the buffer of a body that held max_body_bytes_in_flight go
// to the garbage collector. fasthttp would keep it with the connection
// (release_idle_buffers false) or in its pool of body buffers. After a
// failed read fasthttp has put it in its pool already: the pool gives
// this goroutine, asking at once, the buffer it just put (sync.Pool's
// slot of the processor), which is dropped; what else it might give is
// dropped alike, a miss of the pool.
func dropBody(ctx *fasthttp.RequestCtx) {
	ctx.Request.SwapBody(nil)
}
