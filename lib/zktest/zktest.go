// Package zktest gives tests a private, real ZooKeeper server.
//
// When ZooKeeper is not installed the test fails with the install command:
// tests that need it never skip.
package zktest

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zkserver"
)

// Start runs a ZooKeeper server for the test and stops it at cleanup.
func Start(t testing.TB) *zkserver.Server {
	t.Helper()
	s, err := zkserver.Start(zkserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("start zookeeper: %v", err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	return s
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
// connection up after 2/3 of it without an answer) asks for 10 s, the
// most a server of Start grants.
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
