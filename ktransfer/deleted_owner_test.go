package ktransfer_test

import (
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestDeletedOwnerNodeIsClaimedAgain attacks "a partition is pushed only
// after its ephemeral owners/ node is held": the owner node of a
// partition the process holds is deleted by someone else (an operator
// with zkCli.sh, a cleanup script), not by the end of its session. The
// process must drop the partition and claim it again (a new node, a new
// epoch) before it pushes another record of it, and the new claim must
// stay (no second drop for nothing). Before, only a node that was another
// claim's counted as lost: with no node at all the process went on
// pushing the partition under the old epoch, fenced by nothing (any other
// process could claim it meanwhile), until its next commit was refused.
func TestDeletedOwnerNodeIsClaimedAgain(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	owner := zklayout.Owners(chroot, "m", "t") + "/0"
	e.produce(t, "t", [][2]string{{"k", "before"}})
	waitFor(t, "the first record committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "1" })
	_, old, err := e.conn.Get(owner)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.conn.Delete(owner, -1); err != nil {
		t.Fatal(err)
	}
	var epoch int64
	waitFor(t, "the partition claimed again (a new owner node)", 5*time.Second, func() bool {
		_, st, err := e.conn.Get(owner)
		if err == nil && st.Czxid != old.Czxid {
			epoch = st.Czxid
		}
		return epoch != 0
	})
	e.produce(t, "t", [][2]string{{"k", "after"}})
	waitFor(t, "the second record committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "2" })
	time.Sleep(time.Second) // a reassignment reading owners/ before the new claim would drop it now
	if _, st, err := e.conn.Get(owner); err != nil || st.Czxid != epoch {
		t.Errorf("the new claim (epoch %d) did not stay: owner node now %+v, %v", epoch, st, err)
	}
	for _, p := range b.got() {
		if p.body == "after" && p.epoch != epoch {
			t.Errorf("record after pushed with epoch %d; the owner node held is of epoch %d", p.epoch, epoch)
		}
	}
}
