package ktransfer_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestOwnerNodeRewrittenByHandIsClaimedAgain: an operator writes another
// id into an owner node (a typo, the id of a process gone) of a partition
// process a holds. The node is still a's session's: nobody else may
// create it, and no session's end deletes it while a runs. a must take
// the partition back (its next commit is refused: the node moved on) and
// go on pushing it. Before, a's release left the node as another claim's,
// the assignment took the unknown id for a dead process and gave the
// partition to a or b, whose claim found the node held and gave up
// without a word: the partition was pushed by nobody until a stopped.
func TestOwnerNodeRewrittenByHandIsClaimedAgain(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	b := newBackend(t, nil)
	a := e.start(t, module("m", "t", b.URL))
	e.start(t, module("m", "t", b.URL))
	var part string
	waitFor(t, "each process holding one partition", 15*time.Second, func() bool {
		o := e.owners(t, "m", "t")
		if len(o) != 2 || o["0"] == o["1"] {
			return false
		}
		for _, p := range a.tr.Status()[0].Partitions {
			part = strconv.Itoa(int(p.Partition))
		}
		return len(a.tr.Status()[0].Partitions) == 1
	})
	p, _ := strconv.Atoi(part)
	if _, err := e.conn.Set(zklayout.Owners(chroot, "m", "t")+"/"+part, []byte("ghost"), -1); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		key := "k" + strconv.Itoa(i)
		writeKeys(t, e, int32(p), []string{key})
		waitFor(t, "record "+key+" pushed after the owner node was rewritten", 20*time.Second, func() bool {
			for _, q := range b.got() {
				if q.key == key {
					return true
				}
			}
			return false
		})
	}
	waitFor(t, "offset 3 stored", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", p) == "3" })
}
