package ktransfer_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestHandOverCommitRetriedAfterAFailedWrite: process a pushed ten
// records of each of two partitions, the last five of each acknowledged
// while ZooKeeper refused the offset writes (a read-only ACL on the offset
// nodes, as a write failing for a while). Process b joins and a hands one
// partition over; the writes are allowed again 300 ms into the hand-over,
// within its bound (shutdown_timeout_ms). a must store what it
// acknowledged before it lets the partition go, so b starts at offset 10
// and pushes none of those records again. Before, the hand-over's commit
// was tried once: its failure was logged "will retry", nothing retried it,
// and b pushed offsets 5-9 a second time.
func TestHandOverCommitRetriedAfterAFailedWrite(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	b := newBackend(t, nil)
	ma := module("m", "t", b.URL)
	ma.Protocol.URI = "/a/{#TOPIC}?key={#KEY}"
	a := e.start(t, ma)
	waitFor(t, "a holding both partitions", 10*time.Second, func() bool { return len(a.tr.Status()[0].Partitions) == 2 })
	keys := func(from, to int) []string {
		var ks []string
		for i := from; i < to; i++ {
			ks = append(ks, "k"+strconv.Itoa(i))
		}
		return ks
	}
	for p := range int32(2) {
		writeKeys(t, e, p, keys(0, 5))
	}
	waitFor(t, "offset 5 stored for both partitions", 10*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "5" && e.storedOffset(t, "m", "t", 1) == "5"
	})
	dir := zklayout.Offsets(chroot, "m", "t")
	setACL := func(perms int32) {
		t.Helper()
		for p := range 2 {
			if _, err := e.conn.SetACL(dir+"/"+strconv.Itoa(p), zk.WorldACL(perms), -1); err != nil {
				t.Fatal(err)
			}
		}
	}
	setACL(zk.PermRead | zk.PermAdmin) // admin: the test gives write back
	for p := range int32(2) {
		writeKeys(t, e, p, keys(5, 10))
	}
	waitFor(t, "a pushing offsets 0-9 of both partitions", 10*time.Second, func() bool { return len(b.got()) == 20 })
	mb := module("m", "t", b.URL)
	mb.Protocol.URI = "/b/{#TOPIC}?key={#KEY}"
	second := e.start(t, mb)
	deadline := time.Now().Add(10 * time.Second)
	for ktransfer.Releasing(a.tr) == 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	setACL(zk.PermAll)
	waitFor(t, "b holding a partition", 10*time.Second, func() bool { return len(second.tr.Status()[0].Partitions) == 1 })
	moved := second.tr.Status()[0].Partitions[0].Partition
	waitFor(t, "the handed-over partition's offset 10 stored", 10*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", int(moved)) == "10"
	})
	time.Sleep(time.Second) // b's pushes of records a pushed, if any, come by now
	for _, p := range b.got() {
		if strings.HasPrefix(p.path, "/b/") {
			t.Errorf("b pushed partition %s offset %s (key %s), which a had pushed and acknowledged before the hand-over", p.partition, p.offset, p.key)
		}
	}
}
