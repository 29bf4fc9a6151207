package zkserver

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

func TestMissingServerNamesInstallCommand(t *testing.T) {
	_, err := Start(Config{Dir: t.TempDir(), Jar: "/nonexistent/zookeeper.jar"})
	if err == nil || !strings.Contains(err.Error(), "apt-get install -y zookeeper") {
		t.Fatalf("Start without the jar: %v; want the install command", err)
	}
}

func TestStartStop(t *testing.T) {
	s, err := Start(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := Ruok(s.Addr); err != nil {
		t.Fatalf("ruok: %v", err)
	}
	if !strings.HasPrefix(s.Addr, "127.0.0.1:") {
		t.Errorf("listens on %s, want loopback", s.Addr)
	}
	s.Stop()
	if err := Ruok(s.Addr); err == nil {
		t.Errorf("still answering after Stop")
	}
	s.Stop() // idempotent
}

func TestEnsemble(t *testing.T) {
	servers, err := StartEnsemble(t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range servers {
			s.Stop()
		}
	}()
	for _, s := range servers {
		if !Serving(s.Addr) {
			t.Errorf("%s not serving", s.Addr)
		}
	}
	servers[0].Stop()
	// Two of three still form a quorum: once they elected a leader again,
	// a loaded machine's JVMs taking their time.
	deadline := time.Now().Add(60 * time.Second)
	for !(Serving(servers[1].Addr) && Serving(servers[2].Addr)) {
		if time.Now().After(deadline) {
			t.Fatal("the two remaining servers do not serve within 60 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Restart brings the server back on the same address with its data: a
// persistent node is still there, and a session that reconnects in time is
// still alive with its ephemeral node.
func TestRestartKeepsPortDataAndSessions(t *testing.T) {
	s, err := Start(Config{Dir: t.TempDir(), TickMs: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	// Failed once in CI on a loaded machine (no session within 30 s of the
	// restart, the server serving): what the client and the server did
	// is told then.
	clientLog := &syncLog{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the client's log:\n%s\nthe end of the server's log:\n%s", clientLog, logTail(filepath.Join(s.Dir, "zookeeper.out")))
		}
	})
	addr, pid := s.Addr, s.Pid()
	conn, events, err := zk.Connect([]string{addr}, 15*time.Second, zk.WithLogger(clientLog))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sessions := sessionsOf(events)
	waitSession(t, sessions)
	session := conn.SessionID()
	if _, err := conn.Create("/kept", []byte("v"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create("/mine", nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.Addr != addr || s.Pid() == pid {
		t.Fatalf("after Restart: %s pid %d, before %s pid %d; want the same address, a new process", s.Addr, s.Pid(), addr, pid)
	}
	waitSession(t, sessions)
	if conn.SessionID() != session {
		t.Errorf("session %x after the restart, want %x kept", conn.SessionID(), session)
	}
	for _, p := range []string{"/kept", "/mine"} {
		if ok, _, err := conn.Exists(p); err != nil || !ok {
			t.Errorf("%s after the restart: exists %v, %v", p, ok, err)
		}
	}
	s.Stop()
	if err := Ruok(s.Addr); err == nil {
		t.Errorf("still answering after Stop")
	}
}

// syncLog keeps what a ZooKeeper client logs, each line stamped.
type syncLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *syncLog) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// sessionsOf reads events as they come and tells each session
// (re)established: the client drops an event its channel (6 deep) has no
// room for, and a restart's reconnect attempts, one a second, fill it
// while nothing reads it.
func sessionsOf(events <-chan zk.Event) <-chan struct{} {
	sessions := make(chan struct{}, 16)
	go func() {
		for ev := range events { // closed with the connection
			if ev.State == zk.StateHasSession {
				select {
				case sessions <- struct{}{}:
				default: // 16 unread: the test waits for one at a time
				}
			}
		}
	}()
	return sessions
}

func waitSession(t *testing.T, sessions <-chan struct{}) {
	t.Helper()
	select {
	case <-sessions:
	case <-time.After(30 * time.Second):
		t.Fatal("no session within 30s")
	}
}

// takenFirst makes freePort hand out a port held by a listener of the
// test first, then free ones: a port that was free a moment ago and was
// taken before the server bound it, as when tests start servers side by
// side.
func takenFirst(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var handed atomic.Bool
	freePort = func() (int, error) {
		if handed.CompareAndSwap(false, true) {
			return l.Addr().(*net.TCPAddr).Port, nil
		}
		return FreePort()
	}
	t.Cleanup(func() { freePort = FreePort })
}

// A server given a port that was taken meanwhile exits at start; Start
// and StartEnsemble choose their ports, so they try other ones rather
// than fail the test that asked for a server.
func TestStartOnATakenPortTriesAnother(t *testing.T) {
	takenFirst(t)
	s, err := Start(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("Start with its first port taken: %v", err)
	}
	defer s.Stop()
	if err := Ruok(s.Addr); err != nil {
		t.Fatalf("ruok: %v", err)
	}
}

func TestEnsembleOnATakenPortTriesOthers(t *testing.T) {
	takenFirst(t)
	servers, err := StartEnsemble(t.TempDir(), 3)
	if err != nil {
		t.Fatalf("StartEnsemble with its first port taken: %v", err)
	}
	for _, s := range servers {
		s.Stop()
	}
}

// A port handed out free can be taken meanwhile by another test's
// ZooKeeper (packages' tests run side by side): that server answers on the
// port before the one started there finds the port taken and exits. Start
// must not take the other server for its own: the server it returns is
// its own, and still serves once the other one stops.
func TestStartOnAPortAnotherZooKeeperHoldsTriesAnother(t *testing.T) {
	other, err := Start(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop()
	_, port, _ := net.SplitHostPort(other.Addr)
	var handed atomic.Bool
	freePort = func() (int, error) {
		if handed.CompareAndSwap(false, true) {
			return strconv.Atoi(port)
		}
		return FreePort()
	}
	t.Cleanup(func() { freePort = FreePort })
	s, err := Start(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("Start with its first port held by another ZooKeeper: %v", err)
	}
	defer s.Stop()
	other.Stop()
	if err := Ruok(s.Addr); err != nil {
		t.Fatalf("the server Start returned on %s (the other one was on %s) does not answer once the other stopped: %v", s.Addr, other.Addr, err)
	}
}

// A server's port is taken below Linux's ephemeral range (32768-60999): a
// server stopped and started again on its port (Restart, or a test that
// starts a new server there) finds it free, whereas a port in that range
// may meanwhile be the local port of a connection of any test running
// beside it, and the server would not start.
func TestPortBelowEphemeralRange(t *testing.T) {
	s, err := Start(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	_, port, _ := net.SplitHostPort(s.Addr)
	if p, _ := strconv.Atoi(port); p < 1024 || p >= 32768 {
		t.Fatalf("server on %s, want a port within 1024-32767", s.Addr)
	}
}

// A server that does not start says why in the error itself: the test's
// temporary directory, and the log in it, are gone once the test ends.
func TestStartFailureQuotesTheServerLog(t *testing.T) {
	jar := filepath.Join(t.TempDir(), "zookeeper.jar")
	if err := os.WriteFile(jar, []byte("not a jar"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Start(Config{Dir: t.TempDir(), Jar: jar})
	if err == nil {
		s.Stop()
		t.Fatal("a server from a broken jar started")
	}
	if !strings.Contains(err.Error(), "ZooKeeperServerMain") {
		t.Fatalf("the error does not quote the server's log: %v", err)
	}
}
