package kmonitor_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// An offset znode deleted and created again at once (an operator resetting
// an offset with zkCli delete + create, a tool rewriting it) is still
// followed afterwards: the watcher that saw it deleted must not leave a
// stale entry behind that keeps a new one from starting.
func TestOffsetZnodeDeletedAndCreatedAgainIsFollowed(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 1000)
	setOffset(t, e.conn, "m", "a", "0", "0")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":1000}}}`+"\n", 10*time.Second)
	p := chroot + "/consumers/m/offsets/a/0"
	for i := 1; i <= 100; i++ {
		if err := e.conn.Delete(p, -1); err != nil {
			t.Fatal(err)
		}
		if _, err := e.conn.Create(p, []byte(strconv.Itoa(i)), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`{"test_cluster":{"m":{"0":%d}}}`+"\n", 1000-i)
		e.eventually(t, "", want, 3*time.Second)
	}
}
