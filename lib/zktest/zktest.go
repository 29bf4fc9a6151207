// Package zktest gives tests a private, real ZooKeeper server.
//
// When ZooKeeper is not installed the test fails with the install command:
// tests that need it never skip.
package zktest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zkserver"
)

// Start runs a ZooKeeper server of its own for the test, with an empty
// data directory, and kills it at cleanup (its data goes with it).
//
// A server takes a second or two to start (a JVM), and most tests of a
// package start one: Start hands out a server started in the background
// while the test before ran, and starts the next one the same way.
func Start(t testing.TB) *zkserver.Server {
	t.Helper()
	s, dir, err := take()
	if err != nil {
		t.Logf("zookeeper started ahead failed, starting one now: %v", err)
		dir = t.TempDir()
		if s, err = zkserver.Start(serverConfig(dir)); err != nil {
			t.Fatalf("start zookeeper: %v", err)
		}
		dir = "" // t.TempDir's, removed by the test
	}
	t.Cleanup(func() {
		s.Kill()
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
	})
	startAhead()
	return s
}

// MaxSessionMs is the longest session a server of Start grants: a test
// whose process must outlast a long stall asks for more than the 10 s of
// the default ticks. Every other session is granted as asked. A test that
// restarts a server (zkserver.Start on its port) gives it the same.
const MaxSessionMs = 30000

// serverConfig is the configuration of a server of Start in dir.
func serverConfig(dir string) zkserver.Config {
	return zkserver.Config{Dir: dir, MaxSessionMs: MaxSessionMs}
}

// ahead is the server being started for the next Start, nil when none is.
var (
	aheadMu sync.Mutex
	ahead   chan started
)

type started struct {
	s   *zkserver.Server
	dir string
	err error
}

// take returns the server started ahead, waiting for it, or one started
// now when none was.
func take() (*zkserver.Server, string, error) {
	aheadMu.Lock()
	ch := ahead
	ahead = nil
	aheadMu.Unlock()
	if ch == nil {
		ch = startOne()
	}
	r := <-ch
	return r.s, r.dir, r.err
}

// startAhead starts the server the next Start takes.
func startAhead() {
	aheadMu.Lock()
	defer aheadMu.Unlock()
	if ahead == nil {
		ahead = startOne()
	}
}

// startOne starts a server in a directory of its own, in the background.
func startOne() chan started {
	ch := make(chan started, 1)
	go func() {
		sweepOnce.Do(sweep)
		dir, err := os.MkdirTemp("", fmt.Sprintf("zktest-%d-", os.Getpid()))
		if err != nil {
			ch <- started{err: err}
			return
		}
		s, err := zkserver.Start(serverConfig(dir))
		if err != nil {
			_ = os.RemoveAll(dir)
		}
		ch <- started{s: s, dir: dir, err: err}
	}()
	return ch
}

// Connect opens a session of 10 s to addr (the test's own client: it
// must outlast a stall of a loaded machine), waits until it is
// established and closes it at cleanup.
func Connect(t testing.TB, addr string) *zk.Conn {
	t.Helper()
	return ConnectSession(t, addr, 10*time.Second)
}

// ConnectSession is Connect with a session timeout of its own: a session
// that must outlast a stall of a loaded machine (the client gives the
// connection up after 2/3 of it without an answer) asks for 10 s; a
// server of Start grants up to MaxSessionMs.
func ConnectSession(t testing.TB, addr string, timeout time.Duration) *zk.Conn {
	t.Helper()
	conn, events, err := zk.Connect([]string{addr}, timeout, zk.WithLogInfo(false))
	if err != nil {
		t.Fatalf("connect to zookeeper %s: %v", addr, err)
	}
	t.Cleanup(conn.Close)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				go drain(events)
				return conn
			}
		case <-deadline:
			t.Fatalf("no zookeeper session with %s after 30s", addr)
		}
	}
}

func drain(events <-chan zk.Event) {
	for range events {
	}
}

// sweepOnce removes, once per test binary, what earlier ones left: the
// server started ahead for a Start that never came is killed with its test
// binary, but its directory stays.
var sweepOnce sync.Once

// sweep removes the zktest-PID-* directories of processes no longer alive.
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "zktest-*-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(d), "zktest-"), "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}
