package zkserver

import (
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// firstThen hands out first, then the other servers, where the client
// shuffles them (zk.Connect, before Init) and its own host provider
// would hand them out in that order.
type firstThen struct {
	first   string
	mu      sync.Mutex
	servers []string
	next    int
}

func (p *firstThen) Init(servers []string) error {
	p.servers = append([]string{p.first}, slices.DeleteFunc(servers, func(s string) bool { return s == p.first })...)
	return nil
}
func (p *firstThen) Len() int   { return len(p.servers) }
func (p *firstThen) Connected() {}
func (p *firstThen) Next() (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.servers[p.next%len(p.servers)]
	p.next++
	return s, p.next > len(p.servers) && p.next%len(p.servers) == 1
}

// A ZooKeeper server that is frozen (SIGSTOP, a stalled VM, a long GC)
// still completes TCP handshakes: its kernel queues the connections, and
// nothing answers the client's connect request. The client waited for the
// answer 10 × two thirds of its session timeout (40 s for 6 s) before it
// tried the next server: a process whose server froze lost its session
// while the ensemble's other servers were well (ktransfer then gives up
// its partitions, kmonitor reports ZooKeeper unreachable). It must reach
// the next server within its session timeout: it waits for an answer as
// long as a running session tolerates silence from its server (two
// thirds of the session timeout).
func TestClientPassesAFrozenServerWithinItsSession(t *testing.T) {
	s, err := Start(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	frozen, err := net.Listen("tcp", "127.0.0.1:0") // never accepts: the kernel does the handshake
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Close()
	const session = 6 * time.Second
	start := time.Now()
	conn, events, err := zk.Connect([]string{frozen.Addr().String(), s.Addr}, session,
		zk.WithHostProvider(&firstThen{first: frozen.Addr().String()}), zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if ev := awaitSession(t, events, session, "the client still waits for the frozen server"); ev.Server != s.Addr {
		t.Fatalf("session with %s, want %s", ev.Server, s.Addr)
	}
	t.Logf("session with the second server after %v", time.Since(start).Round(time.Millisecond))
}

// awaitSession returns the event of the client's first session, failing
// the test, with why, when none comes within.
func awaitSession(t *testing.T, events <-chan zk.Event, within time.Duration, why string) zk.Event {
	t.Helper()
	for deadline := time.After(within); ; {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return ev
			}
		case <-deadline:
			t.Fatalf("no session within %v: %s", within, why)
		}
	}
}

// slowProxy forwards to target; the server's answers reach the client
// delay late (a member whose commits, hence new sessions, take delay: a
// loaded disk's fsync).
func slowProxy(t *testing.T, target string, delay time.Duration) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() {
				buf := make([]byte, 1<<16)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						time.Sleep(delay)
						if _, err := c.Write(buf[:n]); err != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return l.Addr().String()
}

// An ensemble whose members are all slow but alive, answering in 1.5 s,
// less than the two thirds of the session timeout a running session
// tolerates: a new session is still made. Bounded by the session timeout
// over the servers (1 s for ktransfer's default 3 s and three members),
// every handshake was given up and none made.
func TestSlowEnsembleGetsASession(t *testing.T) {
	s, err := Start(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	var hosts []string
	for i := 0; i < 3; i++ {
		hosts = append(hosts, slowProxy(t, s.Addr, 1500*time.Millisecond))
	}
	const session = 3 * time.Second // ktransfer's default zk_timeout_ms
	start := time.Now()
	conn, events, err := zk.Connect(hosts, session, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for deadline := time.After(4 * session); ; {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				t.Logf("session after %v", time.Since(start).Round(time.Millisecond))
				return
			}
		case <-deadline:
			t.Fatalf("no session within %v from 3 servers answering in 1.5 s", 4*session)
		}
	}
}
