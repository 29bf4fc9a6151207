package kmonitor

import (
	"context"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// TestExpiryOfAReplacedClientKeepsTheOffsets: a ZooKeeper client closed
// when it was replaced may still complete a handshake it had under way,
// and be told its session expired, after the next client began its epoch
// and read every offset. That started another epoch: every offset read
// turned "not read again" for good (nothing reads an unchanged znode
// again), a stuck module's growing lag never shown. Only the current
// client's expiry starts one.
func TestExpiryOfAReplacedClientKeepsTheOffsets(t *testing.T) {
	c, _ := sessionCluster(true)
	old, cur := &zk.Conn{}, &zk.Conn{} // compared, never used
	c.conn = cur
	c.state.newEpoch() // the current client's, as runClient begins it
	k := partKey{"m", "t", "0"}
	tp := topicPartition{"t", 0}
	if err := c.state.setOffset(context.Background(), k, nil, []byte("4")); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c.state.setEnd(tp, 10, now, nil, now)
	expired := zk.Event{Type: zk.EventSession, State: zk.StateExpired}
	lag := func() Lag {
		t.Helper()
		for _, l := range c.state.snapshot("c", time.Now(), time.Minute, "", lostConn{}) {
			if l.Partition == "0" {
				return l
			}
		}
		t.Fatal("partition 0 not shown")
		return Lag{}
	}

	c.expiredSession(old, expired)
	if l := lag(); l.Err != "" || l.Lag != 6 {
		t.Fatalf("after the replaced client's expiry: %+v, want lag 6", l)
	}
	c.expiredSession(cur, expired)
	if l := lag(); l.Err == "" {
		t.Fatalf("after the current client's expiry: %+v, want the offset not read again", l)
	}
}
