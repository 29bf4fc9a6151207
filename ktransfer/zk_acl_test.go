package ktransfer_test

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestKafkaSecuredChroot: the chroot is a Kafka cluster's run with
// zookeeper.set.acl, as Kafka leaves it: the chroot and its parent may be
// read by anyone and written by Kafka only, consumers/ is open. ktransfer
// must register, claim and push there. (Before, creating the module's
// folders began with a create of the existing chroot, which ZooKeeper
// refused for the parent's ACL: the process never registered.)
func TestKafkaSecuredChroot(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	if err := zklayout.CreateAll(e.conn, zklayout.Consumers(chroot), zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/mq", chroot} {
		if _, err := e.conn.SetACL(p, zk.WorldACL(zk.PermRead), -1); err != nil {
			t.Fatal(err)
		}
	}
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	produceN(t, e, 0, 40)
	waitFor(t, "40 records pushed", 10*time.Second, func() bool {
		seen := map[string]bool{}
		for _, p := range b.got() {
			seen[p.body] = true
		}
		return len(seen) == 40
	})
	waitFor(t, "offsets stored", 30*time.Second, func() bool {
		n := 0
		for _, p := range []int{0, 1} {
			if o := e.storedOffset(t, "m", "t", p); o != "" && o[0] != '<' {
				n++
			}
		}
		return n == 2
	})
}
