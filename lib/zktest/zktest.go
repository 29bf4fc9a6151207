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

// Connect opens a session to addr, waits until it is established and
// closes it at cleanup.
func Connect(t testing.TB, addr string) *zk.Conn {
	t.Helper()
	conn, events, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithLogInfo(false))
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
