package kproxy

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestBodyBudgetHolds attacks bodyBudget's bookkeeping where the server
// tests cannot aim: a hold is given back by its connection's close alone
// (fasthttp calls no handler when the 100 cannot be written, nor when a
// chunked body's client closes cleanly between chunks), and not once its
// RequestCtx serves another connection, whose hold the first connection's
// close must leave; a connection's new request ends what its last one
// held.
func TestBodyBudgetHolds(t *testing.T) {
	b := newBodyBudget(1 << 20)
	var h1, h2 fasthttp.RequestHeader
	a, _ := net.Pipe()
	c, _ := net.Pipe()

	if b.admit(&h1, a, 200<<10) || b.inUse() != 256<<10 {
		t.Fatalf("200 KiB: refused or holds %d, want 256 KiB held", b.inUse())
	}
	b.closed(a)
	if b.inUse() != 0 || b.held.Load() != 0 || len(b.byConn) != 0 {
		t.Fatalf("after its connection's close: %d held (%d holds, %d by connection), want none", b.inUse(), b.held.Load(), len(b.byConn))
	}

	b.admit(&h1, a, 200<<10)
	b.admit(&h1, c, 300<<10) // the RequestCtx now serves c
	b.closed(a)
	if b.inUse() != 512<<10 {
		t.Fatalf("a's close after its RequestCtx went to c: %d held, want c's 512 KiB", b.inUse())
	}
	if hold := b.release(&h1); hold.n != 512<<10 || b.inUse() != 0 || len(b.byConn) != 0 {
		t.Fatalf("c's answer gave back %d, %d left (%d by connection), want 512 KiB, none", hold.n, b.inUse(), len(b.byConn))
	}
	b.closed(c)

	b.admit(&h1, a, 200<<10)
	b.admit(&h2, a, 100<<10) // a's next request, in another RequestCtx
	if b.inUse() != 128<<10 || b.held.Load() != 1 {
		t.Fatalf("a's next request: %d held (%d holds), want its 128 KiB alone", b.inUse(), b.held.Load())
	}
	b.closed(a)

	if b.admit(&h1, a, 1<<20) {
		t.Fatal("1 MiB, alone, refused with max 1 MiB")
	}
	if !b.admit(&h2, c, 100<<10) || !b.refused(&h2) {
		t.Fatal("128 KiB more than max held: taken")
	}
	if hold := b.release(&h2); !hold.refused || b.inUse() != 1<<20 {
		t.Fatalf("the refused request's answer: %+v, %d held, want refused and 1 MiB held", hold, b.inUse())
	}
	b.release(&h1)
	if b.admit(&h1, a, 3<<20) || b.inUse() != 4<<20 {
		t.Fatalf("3 MiB alone, above max: refused or %d held, want 4 MiB held", b.inUse())
	}
	b.release(&h1)
	// A chunked body with max_request_size_bytes at the largest integer:
	// held alone, and nothing after it overflows.
	if b.admit(&h1, a, chunkedBuffer(math.MaxInt)) || !b.admit(&h2, c, 100<<10) || b.inUse() != math.MaxInt {
		t.Fatalf("the largest body alone, then another: %d held, want the largest alone", b.inUse())
	}
	b.release(&h2)
	b.release(&h1)
	if b.inUse() != 0 || b.held.Load() != 0 || len(b.byConn) != 0 {
		t.Fatalf("%d held (%d holds, %d by connection) at the end, want none", b.inUse(), b.held.Load(), len(b.byConn))
	}
}

// TestRequestCtxOfItsHeader: headerReceived finds the connection of a
// request from its header, which fasthttp's server hands it as
// &ctx.Request.Header: the RequestCtx found is the one the handler gets,
// and its connection the one ConnState is told of.
func TestRequestCtxOfItsHeader(t *testing.T) {
	var ctx fasthttp.RequestCtx
	if got := requestCtxOf(&ctx.Request.Header); got != &ctx {
		t.Fatalf("requestCtxOf(&ctx.Request.Header) = %p, want %p", got, &ctx)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		ctx  *fasthttp.RequestCtx
		conn net.Conn
	}
	found, handled, states := make(chan seen, 1), make(chan seen, 1), make(chan net.Conn, 1)
	srv := &fasthttp.Server{
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			c := requestCtxOf(h)
			found <- seen{c, c.Conn()}
			return fasthttp.RequestConfig{}
		},
		Handler: func(c *fasthttp.RequestCtx) { handled <- seen{c, c.Conn()} },
		ConnState: func(c net.Conn, st fasthttp.ConnState) {
			if st == fasthttp.StateNew {
				states <- c
			}
		},
	}
	go srv.Serve(l)
	defer srv.Shutdown()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
	f, h, st := <-found, <-handled, <-states
	if f.ctx != h.ctx || f.conn != h.conn || f.conn != st {
		t.Fatalf("from the header: ctx %p, conn %v; the handler's: %p, %v; ConnState's conn %v", f.ctx, f.conn, h.ctx, h.conn, st)
	}
}

// TestBufferSizeIsFasthttps: bufferSize is what fasthttp allocates for a
// declared body (roundUpForSliceCap): the next power of two, up to 100
// MiB.
func TestBufferSizeIsFasthttps(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want int64
	}{{65537, 128 << 10}, {1 << 20, 1 << 20}, {10 << 20, 16 << 20}, {100 << 20, 128 << 20}, {100<<20 + 1, 100<<20 + 1}} {
		if got := bufferSize(tc.n); got != tc.want {
			t.Errorf("bufferSize(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

// TestBufferSizeIsWhatFasthttpAllocates: bufferSize is the capacity of the
// buffer fasthttp reads a declared body into, read from fasthttp itself
// (its pool of body buffers emptied first, so that the buffer is new).
func TestBufferSizeIsWhatFasthttpAllocates(t *testing.T) {
	for _, n := range []int{16<<10 + 1, 65537, 1 << 20, 3<<20 + 5} {
		runtime.GC()
		runtime.GC()
		var req fasthttp.Request
		raw := fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("x", n))
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		if got := int64(cap(req.Body())); got != bufferSize(n) {
			t.Errorf("a body of %d bytes: fasthttp's buffer holds %d, bufferSize says %d", n, got, bufferSize(n))
		}
	}
	// A chunked body's one chunk of max bytes: its buffer is allocated for
	// the chunk and its CRLF, twice bufferSize(max) at a power of two.
	for _, max := range []int{1 << 20, 10 << 20} {
		runtime.GC()
		runtime.GC()
		var req fasthttp.Request
		raw := fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", max, strings.Repeat("x", max))
		if err := req.ReadLimitBody(bufio.NewReader(strings.NewReader(raw)), max); err != nil {
			t.Fatal(err)
		}
		if got := cap(req.Body()); got != chunkedBuffer(max) {
			t.Errorf("a chunked body of one chunk of %d bytes: fasthttp's buffer holds %d, chunkedBuffer says %d", max, got, chunkedBuffer(max))
		}
	}
	if got := chunkedBuffer(math.MaxInt); got != math.MaxInt {
		t.Errorf("chunkedBuffer(largest int) = %d, want it unchanged", got)
	}
}
