package kmonitor_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
)

// An offset znode deleted, seen gone by kmonitor's listing of its folder,
// and created again: the listing that finds it again starts a new watcher
// while the old one may still be ending (a busy machine runs it late,
// which the test makes sure of). The old watcher must not drop the offset
// the new one has read: the partition would vanish from /delay until its
// next commit.
func TestOffsetZnodeRecreatedWhileItsOldWatcherEnds(t *testing.T) {
	const late = 300 * time.Millisecond
	kmonitor.DelayOffsetWatcherEnds(t, late)
	recreateOffsetZnode(t, 5, late, "after the old watcher ended")
}

// The old watcher of an offset znode deleted and created again may also
// be reading it again, woken by the deletion, when the listing that found
// the znode gone stops it: it reads the new znode, late (a busy machine),
// after the new watcher has recorded it. It must not record it as its own
// on its way out, nor drop it then.
func TestOffsetZnodeRecreatedWhileItsOldWatcherReadsIt(t *testing.T) {
	const late = 300 * time.Millisecond
	kmonitor.DelayOffsetRereads(t, late)
	recreateOffsetZnode(t, 3, late, "after the old watcher read the znode again")
}

// recreateOffsetZnode follows partition a/0 of module m with kmonitor,
// then rounds times deletes its offset znode and, once kmonitor has had
// time to list the folder without it (stopping its watcher), creates it
// again with the offset the round's number: /delay must show the new
// offset, and still show it late (the old watcher's delay) and 300 ms
// more later. when says when that is, in a failure.
func recreateOffsetZnode(t *testing.T, rounds int, late time.Duration, when string) {
	t.Helper()
	e := start(t)
	produce(t, e.kafka, "a", 0, 100)
	setOffset(t, e.conn, "m", "a", "0", "0")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":100}}}`+"\n", 10*time.Second)
	p := chroot + "/consumers/m/offsets/a/0"
	for i := 1; i <= rounds; i++ {
		if err := e.conn.Delete(p, -1); err != nil {
			t.Fatal(err)
		}
		// Not a wait for an outcome: time for kmonitor to list the folder
		// without the znode, so that the old watcher is stopped (while it
		// may wait to read the znode again).
		time.Sleep(50 * time.Millisecond)
		if _, err := e.conn.Create(p, []byte(strconv.Itoa(i)), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`{"test_cluster":{"m":{"0":%d}}}`+"\n", 100-i)
		e.eventually(t, "", want, 10*time.Second)
		// Past the old watcher's end or late read, the offset is still there.
		for end := time.Now().Add(late + 300*time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if _, got := e.get(t, ""); got != want {
				t.Fatalf("round %d: %s: got %q, want %q", i, when, got, want)
			}
		}
	}
}
