package ktransfer_test

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestUnreadableOwnerNodeLeavesTheOtherPartitions: an owner node that
// ktransfer may not read (another tool's, with its own ACL) made every
// reassignment of the module fail ("reassignment failed; will retry"): no
// partition was claimed, released or handed over, however many the fleet
// had to move. Its partition's owner is unknown, and it is left alone;
// the others are assigned and pushed as ever.
func TestUnreadableOwnerNodeLeavesTheOtherPartitions(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 4})
	dir := zklayout.Owners(chroot, "m", "t")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(dir+"/3", []byte("another tool"), 0, zk.DigestACL(zk.PermAll, "other", "secret")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.conn.Get(dir + "/3"); err == nil {
		t.Fatal("the owner node of partition 3 is readable without its credentials")
	}
	b := newBackend(t, nil)
	produceN(t, e, 0, 400) // keys k0..k39 over the 4 partitions
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "partitions 0, 1 and 2 claimed", 15*time.Second, func() bool {
		o := e.owners(t, "m", "t") // the unreadable node is not listed
		return len(o) == 3 && o["0"] != "" && o["1"] != "" && o["2"] != ""
	})
	want := 0
	ends := kafkatest.EndOffsets(t, e.kafka, e.kc, "t")
	for _, p := range []int32{0, 1, 2} {
		want += int(ends[p])
	}
	if want == 0 || want == 400 {
		t.Fatalf("%d of the 400 records on partitions 0 to 2: the test needs some on partition 3 and some elsewhere", want)
	}
	waitFor(t, "the records of partitions 0, 1 and 2 pushed", 15*time.Second, func() bool { return len(b.got()) >= want })
}
