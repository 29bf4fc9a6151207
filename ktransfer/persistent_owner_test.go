package ktransfer_test

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestPersistentOwnerNodeDoesNotHoldThePartition: owners/t/0 is a
// persistent node naming an instance that does not run (written by hand,
// copied by a tool that turns ephemeral nodes into persistent ones). No
// session's end will ever delete it. The partition must still be pushed.
// (Before, every claim of it found the node "held by another instance"
// and gave up without a word: the partition was never pushed.)
func TestPersistentOwnerNodeDoesNotHoldThePartition(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	dir := zklayout.Owners(chroot, "m", "t")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(dir+"/0", []byte("old-host-1-1-0000"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, nil)
	r := e.start(t, module("m", "t", b.URL))
	produceN(t, e, 0, 40)
	waitFor(t, "every record pushed", 10*time.Second, func() bool { return distinct(b) == 40 })
	if n := len(r.tr.Status()[0].Partitions); n != 2 {
		t.Errorf("the only live instance holds %d partitions, want 2", n)
	}
	switch _, stat, err := e.conn.Get(dir + "/0"); {
	case err != nil:
		t.Errorf("owner node of partition 0: %v", err)
	case stat.EphemeralOwner == 0:
		t.Errorf("owner node of partition 0 is still persistent; want this process's ephemeral node")
	}
}
