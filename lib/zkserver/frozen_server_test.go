package zkserver

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// firstThen hands out the servers in the order given, where the client's
// own host provider shuffles them.
type firstThen struct {
	mu      sync.Mutex
	servers []string
	next    int
}

func (p *firstThen) Init(servers []string) error { p.servers = servers; return nil }
func (p *firstThen) Len() int                    { return len(p.servers) }
func (p *firstThen) Connected()                  {}
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
// the next server within its session timeout, as ZooKeeper's own client
// does (its connect timeout is the session timeout over the servers).
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
		zk.WithHostProvider(&firstThen{}), zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for deadline := time.After(session); ; {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				if ev.Server != s.Addr {
					t.Fatalf("session with %s, want %s", ev.Server, s.Addr)
				}
				t.Logf("session with the second server after %v", time.Since(start).Round(time.Millisecond))
				return
			}
		case <-deadline:
			t.Fatalf("no session within the session timeout (%v): the client still waits for the frozen server", session)
		}
	}
}
