package ktransfer_test

import (
	"path"
	"strconv"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestNewestAfterOffsetNodeDeleted: with start_from: newest, an operator
// deletes a partition's offset node while the process is stopped, to have
// the partition start again at the newest record. The partition starts
// there: the records the module pushed long ago are not pushed again.
func TestNewestAfterOffsetNodeDeleted(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.StartFrom = "newest"
	r := e.start(t, m)
	waitFor(t, "the partition's start stored", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "0" })
	var recs [][2]string
	for i := range 20 {
		recs = append(recs, [2]string{"k", "old" + strconv.Itoa(i)})
	}
	e.produce(t, "t", recs)
	waitFor(t, "the records committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "20" })
	if err := r.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	pushed := len(b.got())

	if err := e.conn.Delete(path.Join(zklayout.Offsets(chroot, "m", "t"), "0"), -1); err != nil {
		t.Fatalf("delete the offset node: %v", err)
	}
	e.start(t, m)
	waitFor(t, "the partition's start stored again", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0)[0] != '<' })
	e.produce(t, "t", [][2]string{{"k", "new"}})
	waitFor(t, "the new record committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "21" })
	var bodies []string
	for _, p := range b.got()[pushed:] {
		bodies = append(bodies, p.body)
	}
	if len(bodies) != 1 || bodies[0] != "new" {
		t.Errorf("after the reset pushed %d records %v, want only new", len(bodies), bodies)
	}
}
