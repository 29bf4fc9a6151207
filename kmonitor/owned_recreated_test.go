package kmonitor_test

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// A module's owners/<topic> deleted and created again with the same claim
// (its processes restarted): the listing of owners/ that finds the folder
// gone stops its watcher, and the next one starts a new watcher, while
// the old one, woken by the deletion, may still be listing the folder (a
// busy machine runs it late, which the test makes sure of). It finds the
// new folder: it must not record that listing as its own on its way out,
// nor drop the claim then; the partition claimed with no offset would
// vanish from /delay until the claims change again.
func TestClaimsFolderRecreatedWhileItsOldWatcherListsIt(t *testing.T) {
	const late = 300 * time.Millisecond
	kmonitor.DelayClaimsRelists(t, late)
	e := start(t)
	produce(t, e.kafka, "a", 0, 4)
	produce(t, e.kafka, "a", 1, 5)
	setOffset(t, e.conn, "m", "a", "0", "1")
	owners := zklayout.Owners(chroot, "m", "a")
	claim := func() {
		t.Helper()
		if err := zklayout.CreateAll(e.conn, owners, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		if _, err := e.conn.Create(owners+"/1", []byte("host-1-abc"), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	claim()
	const want = `{"test_cluster":{"m":{"0":3,"1":null}}}` + "\n"
	e.eventually(t, "", want, 10*time.Second)
	for i := 1; i <= 3; i++ {
		deleteAll(t, e.conn, owners)
		// Not a wait for an outcome: time for kmonitor to list owners/
		// without the folder, so that the old watcher is stopped while it
		// waits to list the folder again.
		time.Sleep(50 * time.Millisecond)
		claim()
		e.eventually(t, "", want, 10*time.Second)
		// Past the old watcher's late listing, the claim is still there.
		for end := time.Now().Add(late + 300*time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			if _, got := e.get(t, ""); got != want {
				t.Fatalf("round %d: after the old watcher listed the folder again: got %q, want %q", i, got, want)
			}
		}
	}
}
