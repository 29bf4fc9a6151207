package kproxy

import (
	"math"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

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
// connection's RequestCtx): a new request's headers end what the
// connection's previous request held, should no answer have.
type bodyBudget struct {
	max int64

	mu    sync.Mutex
	used  int64
	holds map[*fasthttp.RequestHeader]bodyHold
	// byConn are the holds of requests whose body comes after a 100
	// Continue: fasthttp drops such a connection without calling any
	// handler when the 100 cannot be written, and its close gives the
	// hold back.
	byConn map[net.Conn]*fasthttp.RequestHeader
	// held is len(holds), read without the lock: most requests hold
	// nothing, and their answer has nothing to give back.
	held   atomic.Int32
	pinned atomic.Int32 // len(byConn)
}

// bodyHold is what one request holds: n bytes, or, refused, none.
type bodyHold struct {
	n       int64
	refused bool
	conn    net.Conn // set when in byConn
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

// admit holds the buffer of a body of cl bytes for the request of h,
// giving back first what h's previous request still held. It reports
// whether the request is refused: the bytes held with its buffer would pass
// max.
func (b *bodyBudget) admit(h *fasthttp.RequestHeader, cl int) (refused bool) {
	n := bufferSize(cl)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropLocked(h)
	refused = b.used > 0 && n > b.max-b.used // not b.used+n: n can be near the largest int64 (chunkedBuffer)
	if refused {
		n = 0
	}
	b.holds[h] = bodyHold{n: n, refused: refused}
	b.held.Add(1)
	b.used += n
	return refused
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
	if hold.conn != nil && b.byConn[hold.conn] == h {
		delete(b.byConn, hold.conn)
		b.pinned.Add(-1)
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

// pin ties what the request of h holds to its connection, whose close gives
// it back (closed) if nothing answers the request.
func (b *bodyBudget) pin(h *fasthttp.RequestHeader, conn net.Conn) {
	if b.held.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	hold, ok := b.holds[h]
	if !ok || hold.n == 0 {
		return
	}
	hold.conn = conn
	b.holds[h] = hold
	if _, ok := b.byConn[conn]; !ok {
		b.pinned.Add(1)
	}
	b.byConn[conn] = h
}

// closed gives back what a request of conn, pinned to it, still holds.
func (b *bodyBudget) closed(conn net.Conn) {
	if b.pinned.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	h, ok := b.byConn[conn]
	if !ok {
		return
	}
	delete(b.byConn, conn)
	b.pinned.Add(-1)
	if hold, ok := b.holds[h]; ok && hold.conn == conn {
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
	cl := h.ContentLength()
	switch {
	case cl == -1: // chunked: a chunk may declare up to max_request_size_bytes
		cl = chunkedBuffer(s.cfg.MaxRequestSizeBytes)
	case cl <= bodyFloor || cl > s.cfg.MaxRequestSizeBytes:
		return fasthttp.RequestConfig{}
	}
	if s.bodies.admit(h, cl) {
		return fasthttp.RequestConfig{MaxRequestBodySize: 1}
	}
	return fasthttp.RequestConfig{}
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
// buffer of its body when it is over dropAbove (dropBody).
func (s *Server) bodyDone(ctx *fasthttp.RequestCtx) bodyHold {
	hold := s.bodies.release(&ctx.Request.Header)
	if hold.n > dropAbove {
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
