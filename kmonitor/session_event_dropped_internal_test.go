package kmonitor

import (
	"context"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestDroppedSessionEventDoesNotKeepZooKeeperDown: the ZooKeeper client
// drops an event when its channel (6 events) is full — and an expiry
// puts one event per watched path there as it clears the watches (1,600
// and more at scale), beside thousands of woken watchers. When the
// session event that ends an outage (has session) is the one dropped,
// the cluster stayed down, /health 503 and every lag "zookeeper session
// expired", though the session was fine, until the client was replaced
// 2 × the session later. The session's state is read from the client
// too: within the next second the outage ends.
func TestDroppedSessionEventDoesNotKeepZooKeeperDown(t *testing.T) {
	z := zktest.Start(t)
	conn := zktest.Connect(t, z.Addr)
	if conn.State() != zk.StateHasSession {
		t.Fatalf("the test's client has no session: %v", conn.State())
	}
	c, _ := sessionCluster(true)
	c.session = time.Minute // not replaced as stuck within the test
	// The session expired, and the event of the next one never came
	// (dropped).
	c.sessionEvent(conn, zk.Event{Type: zk.EventSession, State: zk.StateExpired})
	if c.zkProblem(time.Now()) == "" {
		t.Fatal("the test needs the cluster down after an expiry")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan zk.Event) // nothing comes
	stuck := make(chan struct{})
	go c.trackSession(ctx, conn, events, stuck)
	deadline := time.Now().Add(3 * time.Second)
	for c.zkProblem(time.Now()) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("the client has had its session for 3 s and the cluster is still down: %q", c.zkProblem(time.Now()))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
