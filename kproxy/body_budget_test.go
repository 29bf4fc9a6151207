package kproxy_test

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// declareBody opens a connection to p and sends a /commit request's headers
// declaring a body of size bytes, and one byte of it: the rest never comes.
// The connection closes with the test.
func declareBody(t *testing.T, p *proxy, size int, extra string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /commit?topic=%s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n", topic, extra, size)
	if extra == "" {
		conn.Write([]byte{0x91})
	}
	return conn
}

// readAnswers reads the first bytes each connection answers into a channel.
func readAnswers(conns []net.Conn, within time.Duration) <-chan string {
	answers := make(chan string, len(conns))
	for _, conn := range conns {
		go func() {
			conn.SetReadDeadline(time.Now().Add(within))
			b := make([]byte, 1024)
			n, _ := conn.Read(b)
			answers <- string(b[:n])
		}()
	}
	return answers
}

// TestDeclaredBodiesBoundedBeforeRead: fasthttp reads a body whole before
// the handler sees the request, into a buffer of its declared length
// rounded up to a power of two, allocated before the first byte; a chunked
// body's chunk alike, from the size its line declares. Clients sending only
// headers that declare 10 MiB (max_request_size_bytes), or a chunk's size
// line, held 16 MiB each until read_timeout_ms: 40 of them, 640 MiB,
// whatever req_pool_size. Past max_body_bytes_in_flight (256 MiB: 16 such
// bodies) a request is answered 503 + Retry-After before anything is
// allocated for its body, and what the admitted hold is on
// kproxy_body_bytes_in_flight.
func TestDeclaredBodiesBoundedBeforeRead(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(map[bool]string{false: "Content-Length", true: "chunked"}[chunked], func(t *testing.T) {
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ReadTimeoutMs = 20_000 })
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)

			const conns, admitted = 40, 16
			var cs []net.Conn
			for range conns {
				if !chunked {
					cs = append(cs, declareBody(t, p, 10<<20, ""))
					continue
				}
				conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				fmt.Fprintf(conn, "POST /commit?topic=%s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n\x91", topic, 10<<20-16)
				cs = append(cs, conn)
			}
			answers := readAnswers(cs, 15*time.Second)
			refused := 0
			timeout := time.After(10 * time.Second)
			for refused < conns-admitted {
				select {
				case a := <-answers:
					if !strings.HasPrefix(a, "HTTP/1.1 503") || !strings.Contains(a, "Retry-After: 1") || !strings.Contains(a, "max_body_bytes_in_flight") {
						t.Errorf("a request over the bodies' budget answered %q, want 503 + Retry-After naming max_body_bytes_in_flight", a)
					}
					refused++
				case <-timeout:
					runtime.ReadMemStats(&after)
					t.Fatalf("%d of %d requests declaring 10 MiB bodies refused within 10 s, want %d; the heap grew by %d MiB",
						refused, conns, conns-admitted, (int64(after.HeapAlloc)-int64(before.HeapAlloc))>>20)
				}
			}
			runtime.ReadMemStats(&after)
			if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > (256+64)<<20 {
				t.Errorf("the heap grew by %d MiB for %d bodies not sent, want at most max_body_bytes_in_flight (256 MiB) and 64 MiB", grown>>20, conns)
			}
			if v := p.metric(t, "kproxy_body_bytes_in_flight"); v != "2.68435456e+08" {
				t.Errorf("kproxy_body_bytes_in_flight = %s with 16 bodies of 16 MiB admitted, want %d", v, 256<<20)
			}
			for _, conn := range cs {
				conn.Close()
			}
			waitFor(t, "the bodies' bytes given back as their connections closed", func() bool {
				return p.metric(t, "kproxy_body_bytes_in_flight") == "0"
			})
		})
	}
}

// bodyHeld is kproxy_body_bytes_in_flight once it settles at want (a
// connection's close reaches kproxy after the client's).
func bodyHeld(t *testing.T, p *proxy, want string) string {
	t.Helper()
	return settled(func() string { return p.metric(t, "kproxy_body_bytes_in_flight") }, func(v string) bool { return v == want })
}

// TestBodyBudgetGivenBackOnEveryPath attacks the bound's other side: what a
// request holds must come back however it ends, or the budget leaks until
// every large body is refused. Each way a request with a body over 64 KiB
// can end — written, refused by the handler, cut by its client, past
// read_timeout_ms, refused or dropped after Expect: 100-continue, on a path
// that is no endpoint — gives back its bytes, and kproxy then still takes
// the largest body max_body_bytes_in_flight allows.
func TestBodyBudgetGivenBackOnEveryPath(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	budget := func(readTimeoutMs int) func(cfg *kproxy.Config) {
		return func(cfg *kproxy.Config) {
			cfg.ReadTimeoutMs = readTimeoutMs
			cfg.MaxBodyBytesInFlight = 1 << 20
			cfg.MaxRequestSizeBytes = 1 << 20
		}
	}
	// read_timeout_ms is long where the budget is filled at the end: eight
	// bodies held past a short one were given back by their 408s on a
	// loaded machine before the ninth came, and the ninth was taken. The
	// body past read_timeout_ms has a proxy of its own.
	p := startProxy(t, c, budget(10_000))
	late := startProxy(t, c, budget(500))
	big, err := msgpack.Marshal(strings.Repeat("v", 100<<10))
	if err != nil {
		t.Fatal(err)
	}
	send := func(t *testing.T, p *proxy, head string, body []byte) string {
		t.Helper()
		conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "%s\r\nHost: x\r\n\r\n", head)
		conn.Write(body)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 512)
		n, _ := io.ReadAtLeast(conn, b, 12)
		return string(b[:n])
	}
	cl := fmt.Sprintf("Content-Length: %d", len(big))
	for _, tc := range []struct {
		name, head string
		body       []byte
		want       string
	}{
		{"written", "POST /commit?topic=" + topic + " HTTP/1.1\r\n" + cl, big, "HTTP/1.1 200"},
		{"chunked", "POST /commit?topic=" + topic + " HTTP/1.1\r\nTransfer-Encoding: chunked", append(fmt.Appendf(nil, "%x\r\n", len(big)), append(big, "\r\n0\r\n\r\n"...)...), "HTTP/1.1 200"},
		{"bad body", "POST /commit?topic=" + topic + " HTTP/1.1\r\n" + cl, append([]byte{0xc1}, big[1:]...), "HTTP/1.1 400"},
		{"bad topic", "POST /commit?topic=__x HTTP/1.1\r\n" + cl, big, "HTTP/1.1 403"},
		{"batch", "POST /batch?topic=" + topic + " HTTP/1.1\r\n" + cl, big, "HTTP/1.1 400"},
		{"no endpoint", "POST /nowhere HTTP/1.1\r\n" + cl, big, "HTTP/1.1 404"},
		{"late", "POST /commit?topic=" + topic + " HTTP/1.1\r\n" + cl, big[:1000], "HTTP/1.1 408"},
		{"expect refused", "POST /commit?topic=__x HTTP/1.1\r\nExpect: 100-continue\r\n" + cl, nil, "HTTP/1.1 403"},
		{"expect late", "POST /commit?topic=" + topic + " HTTP/1.1\r\nExpect: 100-continue\r\n" + cl, nil, "HTTP/1.1 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := p
			if tc.name == "late" {
				p = late
			}
			if a := send(t, p, tc.head, tc.body); !strings.HasPrefix(a, tc.want) {
				t.Fatalf("answered %q, want %s", a, tc.want)
			}
			if v := bodyHeld(t, p, "0"); v != "0" {
				t.Errorf("kproxy_body_bytes_in_flight = %s after the request ended, want 0", v)
			}
		})
	}
	t.Run("cut", func(t *testing.T) {
		conn := declareBody(t, p, len(big), "")
		bodyHeld(t, p, "131072")
		conn.Close()
		if v := bodyHeld(t, p, "0"); v != "0" {
			t.Errorf("kproxy_body_bytes_in_flight = %s after the client cut its body, want 0", v)
		}
	})
	t.Run("chunked closed", func(t *testing.T) {
		// The client closes its side cleanly before a chunk: fasthttp
		// reads io.EOF, no error to it, and ends the connection without
		// calling any handler. The connection's close gives the hold back.
		conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /commit?topic=%s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", topic)
		if v := bodyHeld(t, p, "2.097152e+06"); v != "2.097152e+06" {
			t.Fatalf("kproxy_body_bytes_in_flight = %s with a chunked body being read, want 2097152 (max_request_size_bytes + 2, rounded up)", v)
		}
		conn.(*net.TCPConn).CloseWrite()
		if v := bodyHeld(t, p, "0"); v != "0" {
			t.Errorf("kproxy_body_bytes_in_flight = %s after the chunked body's client closed, want 0", v)
		}
	})
	t.Run("expect reset", func(t *testing.T) {
		// Reset after the 100, the body unsent. (A 100 that cannot be
		// written, after which fasthttp calls no handler, is
		// TestBodyBudgetHolds'.)
		conn := declareBody(t, p, len(big), "Expect: 100-continue\r\n")
		if a := <-readAnswers([]net.Conn{conn}, 5*time.Second); !strings.HasPrefix(a, "HTTP/1.1 100") {
			t.Fatalf("answered %q, want 100 Continue", a)
		}
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
		if v := bodyHeld(t, p, "0"); v != "0" {
			t.Errorf("kproxy_body_bytes_in_flight = %s after the client reset, want 0", v)
		}
	})
	// The whole budget is still there: eight bodies of 100 KiB (128 KiB
	// buffers) are taken at once, a ninth is refused.
	var cs []net.Conn
	for range 8 {
		cs = append(cs, declareBody(t, p, len(big), ""))
	}
	if v := bodyHeld(t, p, "1.048576e+06"); v != "1.048576e+06" {
		t.Fatalf("kproxy_body_bytes_in_flight = %s with eight 128 KiB buffers held, want 1048576", v)
	}
	answers := readAnswers(cs, 300*time.Millisecond)
	for range cs {
		if a := <-answers; a != "" {
			t.Fatalf("one of eight bodies within max_body_bytes_in_flight, all else given back, answered before its body came: %q", a)
		}
	}
	if a := <-readAnswers([]net.Conn{declareBody(t, p, len(big), "")}, 5*time.Second); !strings.HasPrefix(a, "HTTP/1.1 503") {
		t.Errorf("a ninth body with max_body_bytes_in_flight held: %q, want 503", a)
	}
	for _, conn := range cs {
		conn.Close()
	}
}

// TestBodyBudgetExpectAndAlone: a request announced with Expect:
// 100-continue over max_body_bytes_in_flight is answered 503 in place of
// the 100, so that its client sends nothing; and a body larger than
// max_body_bytes_in_flight (within max_request_size_bytes) is taken when
// it is the only one: the budget never refuses what max_request_size_bytes
// allows.
func TestBodyBudgetExpectAndAlone(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.ReadTimeoutMs = 10_000
		cfg.MaxBodyBytesInFlight = 1 << 20
		cfg.MaxRequestSizeBytes = 4 << 20
	})
	// A batch of four records of 768 KiB each: 3 MiB.
	var recs []brec
	for i := range 4 {
		recs = append(recs, brec{key: fmt.Sprint(i), value: unique(t, strings.Repeat("a", 768<<10))})
	}
	alone := mpBatch(t, recs)
	first, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	fmt.Fprintf(first, "POST /batch?topic=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", topic, len(alone), alone[:1])
	bodyHeld(t, p, "4.194304e+06")
	for _, tc := range []struct{ path, want string }{
		{"/commit?topic=" + topic, "HTTP/1.1 503"}, {"/batch?topic=" + topic, "HTTP/1.1 503"},
		{"/commit?topic=__x", "HTTP/1.1 403"}, // refused for its headers first, as without the budget
	} {
		path := tc.path
		conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 200000\r\n\r\n", path)
		a := <-readAnswers([]net.Conn{conn}, 5*time.Second)
		conn.Close()
		if !strings.HasPrefix(a, tc.want) || (tc.want == "HTTP/1.1 503" && !strings.Contains(a, "max_body_bytes_in_flight")) {
			t.Errorf("%s with Expect: 100-continue over the budget: %q, want %s (503 naming max_body_bytes_in_flight), not 100", path, a, tc.want)
		}
	}
	if _, err := first.Write(alone[1:]); err != nil {
		t.Fatal(err)
	}
	if a := <-readAnswers([]net.Conn{first}, 10*time.Second); !strings.HasPrefix(a, "HTTP/1.1 200") {
		t.Errorf("a batch of 3 MiB over max_body_bytes_in_flight (1 MiB), alone: %q, want 200", a)
	}
	if v := bodyHeld(t, p, "0"); v != "0" {
		t.Errorf("kproxy_body_bytes_in_flight = %s after the answers, want 0", v)
	}
}

// TestBodyBuffersLeaveWithTheirHold: a body's buffer given back to
// max_body_bytes_in_flight must not stay in memory outside it. With
// release_idle_buffers false fasthttp keeps a request's body buffer with
// its connection for the next request: eight idle keep-alive connections
// held the 4 MiB buffers of the 3 MiB bodies they had sent, until
// idle_timeout_ms, while the budget, given back, let as many new ones be
// allocated. (With release_idle_buffers true fasthttp puts the buffer in
// its pool, which a later request of a few bytes may take and hold, until
// its read_timeout_ms; dropBody keeps it out of the pool too, but the
// garbage collector empties the pool as such buffers are allocated, and
// no test here makes a request take one reliably.)
func TestBodyBuffersLeaveWithTheirHold(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.MaxRequestSizeBytes = 4 << 20
		cfg.ReleaseIdleBuffers = false
	})
	big, err := msgpack.Marshal(strings.Repeat("b", 3<<20))
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 8
	for range n {
		conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "POST /commit?topic=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", topic, len(big))
		conn.Write(big)
		if a := <-readAnswers([]net.Conn{conn}, 10*time.Second); !strings.HasPrefix(a, "HTTP/1.1 413") {
			t.Fatalf("a body of 3 MiB over max_message_bytes: %q, want 413", a)
		}
	}
	if v := bodyHeld(t, p, "0"); v != "0" {
		t.Fatalf("kproxy_body_bytes_in_flight = %s after the answers, want 0", v)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 12<<20 {
		t.Errorf("the heap keeps %d MiB with %d idle keep-alive connections, each after a body of 3 MiB (a 4 MiB buffer): their buffers outlived what they held of max_body_bytes_in_flight", grown>>20, n)
	}
}

// TestBodyBudgetBelowTwoBuffersWarned: a max_body_bytes_in_flight below two
// buffers of the largest body (a chunked one: max_request_size_bytes + 2,
// rounded up to a power of two) takes such requests one at a time: the
// file loads, and -check and the start say so, naming the file, the key
// and its value. At two buffers nothing is said.
func TestBodyBudgetBelowTwoBuffersWarned(t *testing.T) {
	for _, tc := range []struct {
		budget int
		warned bool
	}{{32<<20 - 1, true}, {32 << 20, false}} {
		f := writeConfig(t, "127.0.0.1:9092", fmt.Sprintf("max_request_size_bytes: 10485760\nmax_body_bytes_in_flight: %d", tc.budget))
		cfg, err := kproxy.LoadConfig(f)
		if err != nil {
			t.Fatalf("max_body_bytes_in_flight %d: the file must load: %v", tc.budget, err)
		}
		var warned []string
		for _, w := range cfg.Warnings() {
			if strings.Contains(w, "max_body_bytes_in_flight") {
				warned = append(warned, w)
			}
		}
		prefix := fmt.Sprintf("%s: max_body_bytes_in_flight: %d ", f, tc.budget)
		switch {
		case tc.warned && (len(warned) != 1 || !strings.HasPrefix(warned[0], prefix) || !strings.Contains(warned[0], "one at a time")):
			t.Errorf("max_body_bytes_in_flight %d: warnings %q, want one starting %q saying they are taken one at a time", tc.budget, cfg.Warnings(), prefix)
		case !tc.warned && len(warned) > 0:
			t.Errorf("max_body_bytes_in_flight %d: warnings %q, want none", tc.budget, warned)
		}
	}
}
