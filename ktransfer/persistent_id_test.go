package ktransfer_test

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestPersistentIDsEntryTakesNoPartitions: ids/ holds a persistent node
// (written by hand or by a tool, left by a restore), shaped like a
// registration. It is no live instance: ids/ entries of live processes
// are ephemeral. Every partition must still be pushed. (Before, it was
// counted in the assignment: its share of the partitions was claimed by
// nobody and never pushed, without a word in the log.)
func TestPersistentIDsEntryTakesNoPartitions(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	dir := zklayout.ConsumerIDs(chroot, "m")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	reg := `{"host":"old-host","pid":1,"version":"0.1.0","started":1,"subscription":{"t":1}}`
	if _, err := e.conn.Create(dir+"/old-host-1-1-0000", []byte(reg), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, nil)
	r := e.start(t, module("m", "t", b.URL))
	produceN(t, e, 0, 40)
	waitFor(t, "every record pushed", 10*time.Second, func() bool { return distinct(b) == 40 })
	if n := len(r.tr.Status()[0].Partitions); n != 2 {
		t.Errorf("the only live instance holds %d partitions, want 2", n)
	}
}
