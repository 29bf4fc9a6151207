package zkserver

import (
	"encoding/binary"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// serve accepts connections on a loopback listener, closed with the test,
// and hands each to handle.
func serve(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go handle(c)
		}
	}()
	return l.Addr().String()
}

// connectAnswer is a connect response, length-prefixed: protocol version
// 0, the timeout granted, the session id and a password of 16 zero bytes.
func connectAnswer(timeoutMs int32, session int64) []byte {
	ans := binary.BigEndian.AppendUint32(nil, 0)
	ans = binary.BigEndian.AppendUint32(ans, uint32(timeoutMs))
	ans = binary.BigEndian.AppendUint64(ans, uint64(session))
	ans = binary.BigEndian.AppendUint32(ans, 16)
	ans = append(ans, make([]byte, 16)...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(ans))), ans...)
}

// A zk_hosts entry naming another service's port (a typo, a moved
// server): the service answers the connect request with its banner, whose
// first 4 bytes the client read as the answer's length — "220 " of an SMTP
// server, 842150944 — allocated that much, then waited for it without a
// deadline while the server waited for a command. The client never tried
// the ensemble's other server. It must refuse the answer as too large for
// a connect response and reach the other server within its session
// timeout.
func TestClientPassesAServiceThatIsNotZooKeeper(t *testing.T) {
	s, err := Start(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	smtp := serve(t, func(c net.Conn) {
		io.WriteString(c, "220 mail.example ESMTP\r\n")
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			io.WriteString(c, "500 5.5.2 Error: bad syntax\r\n") // and waits for the next command
		}
	})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const session = 6 * time.Second
	conn, events, err := zk.Connect([]string{smtp, s.Addr}, session,
		zk.WithHostProvider(&firstThen{first: smtp}), zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if ev := awaitSession(t, events, session, "the client still waits for the SMTP server's \"answer\""); ev.Server != s.Addr {
		t.Fatalf("session with %s, want %s", ev.Server, s.Addr)
	}
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 64<<20 {
		t.Errorf("%d MiB allocated reaching the server after the SMTP one", grown>>20)
	}
}

// A ZooKeeper answer's list is made from the count the answer declares:
// 100,000,000 children in a packet of 24 bytes made a slice of 1.6 GB
// (up to 64 GiB for the largest count, a fatal out-of-memory error where
// that cannot be had) before the decoder found the packet too short. The
// count is checked against the packet first: the call fails, nothing is
// allocated for it.
func TestDeclaredCountRefusedBeforeAllocation(t *testing.T) {
	addr := serve(t, func(c net.Conn) {
		read := func() []byte {
			var l [4]byte
			if _, err := io.ReadFull(c, l[:]); err != nil {
				return nil
			}
			b := make([]byte, binary.BigEndian.Uint32(l[:]))
			if _, err := io.ReadFull(c, b); err != nil {
				return nil
			}
			return b
		}
		if read() == nil { // the connect request
			return
		}
		c.Write(connectAnswer(6000, 1))
		for {
			req := read()
			if req == nil {
				return
			}
			if binary.BigEndian.Uint32(req[4:8]) != 12 { // getChildren2; pings unanswered
				continue
			}
			// xid, zxid, error 0, then the children's count alone
			ans := append([]byte(nil), req[:4]...)
			ans = binary.BigEndian.AppendUint64(ans, 1)
			ans = binary.BigEndian.AppendUint32(ans, 0)
			ans = binary.BigEndian.AppendUint32(ans, 100_000_000)
			c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(len(ans))), ans...))
		}
	})
	conn, events, err := zk.Connect([]string{addr}, 6*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	awaitSession(t, events, 10*time.Second, "the fake server's handshake")
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	children, _, err := conn.Children("/x")
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Errorf("an answer declaring 100,000,000 children in 4 bytes decoded: %d children", len(children))
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 64<<20 {
		t.Errorf("%d MiB allocated for an answer of 24 bytes declaring 100,000,000 children", grown>>20)
	}
}

// openFiles counts the process's open file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd") // Linux, as the project runs
	if err != nil {
		t.Fatalf("counting open files: %v", err)
	}
	return len(fds)
}

// A server that answers a connect request with session id 0 says the
// session expired; the client then connects again. v1.0.4 left the
// connection that said so open, to the garbage collector: a client whose
// session kept being refused (a server that lost its sessions) piled up a
// socket per attempt until a collection, which a quiet process may not run
// for minutes. Each is closed at once.
func TestExpiredSessionClosesItsConnection(t *testing.T) {
	var answered atomic.Int32
	addr := serve(t, func(c net.Conn) {
		defer c.Close()
		var l [4]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(l[:]))); err != nil {
			return
		}
		c.Write(connectAnswer(0, 0)) // session id 0: expired
		answered.Add(1)
		io.Copy(io.Discard, c) // the server keeps its end until the client closes
	})
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection closes what the client leaves
	before := openFiles(t)
	conn, _, err := zk.Connect([]string{addr}, 6*time.Second, zk.WithLogInfo(false), zk.WithLogger(quiet{}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(20 * time.Second)
	for answered.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions refused in 20 s, want 4", answered.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the fourth answer read
	// Open now: the client's connection and the fake server's end of it,
	// the one being made and its end, at most; 4 refused sessions left
	// open are 8 more.
	if grown := openFiles(t) - before; grown > 4 {
		t.Errorf("%d more files open after %d sessions refused as expired, want the current connection's 2 (both ends) and the next's at most", grown, answered.Load())
	}
}

// quiet drops the client's log lines.
type quiet struct{}

func (quiet) Printf(string, ...any) {}

// Every answer a ZooKeeper server sends starts with a 16-byte reply header
// (xid, zxid, error). v1.0.4 decoded the header from the first 16 bytes of
// its receive buffer whatever length the packet declared: a shorter packet
// (a server's bug, a proxy cutting a frame) was read with the stale bytes
// of an earlier answer after it — which could hand a waiting request
// another's reply — and a short one whose xid was a watch event's (-1)
// sliced its body from past its end, a panic that ended the whole
// process. A packet shorter than a reply header is refused: the client
// drops that connection and connects again.
func TestShortPacketRefused(t *testing.T) {
	var conns atomic.Int32
	addr := serve(t, func(c net.Conn) {
		n := conns.Add(1)
		var l [4]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(l[:]))); err != nil {
			return
		}
		c.Write(connectAnswer(6000, 1))
		if n == 1 {
			// 12 bytes: a watch event's xid and a zxid, no error, no event
			short := binary.BigEndian.AppendUint32(nil, 12)
			short = binary.BigEndian.AppendUint32(short, 0xffffffff)
			c.Write(binary.BigEndian.AppendUint64(short, 1))
		}
		io.Copy(io.Discard, c) // pings unanswered
	})
	conn, events, err := zk.Connect([]string{addr}, 6*time.Second, zk.WithLogInfo(false), zk.WithLogger(quiet{}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	awaitSession(t, events, 10*time.Second, "the fake server's first handshake")
	awaitSession(t, events, 10*time.Second, "no new connection after a packet of 12 bytes")
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2: the one that sent a packet of 12 bytes, and the next", n)
	}
}
