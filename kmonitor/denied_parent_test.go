package kmonitor_test

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// A module's offsets/<topic> is deleted after the offsets/ folder above it
// became unreadable to kmonitor (an ACL changed): the module shows as one
// unreadable folder ("*"), and the watchers of the deleted topic wait
// quietly for it. The watcher of the topic's node asked ZooKeeper back to
// back (its wait for the node to come back failed at once, unreadable
// parent, and it asked again without a pause: thousands of requests a
// second), and the watcher of the topic's folder showed the deleted
// folder as unreadable, an error that went and came back every 5 s.
func TestDeletedTopicUnderUnreadableFolderWaitsQuietly(t *testing.T) {
	e, want := deletedTopicUnderClosedOffsets(t)
	e.eventually(t, "?format=zabbix", "- test_cluster.kmonitor.errors 1\n", time.Second)

	// Over 6 s (past the 5 s between a denied folder's retries): the same
	// answer throughout, and ZooKeeper asked little (pings, retries).
	before := mntr(t, e.zk.Addr, "zk_packets_received")
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, got := e.get(t, ""); got != want {
			t.Fatalf("/delay while the deleted topic's folder stays unlistable: %q, want %q", got, want)
		}
	}
	if n := mntr(t, e.zk.Addr, "zk_packets_received") - before; n > 300 {
		t.Errorf("ZooKeeper received %d requests in 6 s while kmonitor waited for a deleted topic under an unreadable folder", n)
	}
}

// deletedTopicUnderClosedOffsets starts kmonitor on module m's offsets of
// topic a, makes m's offsets/ unreadable to it (closeOffsets), deletes
// offsets/a, and waits until /delay shows the one unreadable folder, the
// answer it returns.
func deletedTopicUnderClosedOffsets(t *testing.T) (*env, string) {
	t.Helper()
	e := start(t)
	produce(t, e.kafka, "a", 1, 5)
	setOffset(t, e.conn, "m", "a", "1", "2")
	e.eventually(t, "", `{"test_cluster":{"m":{"1":3}}}`+"\n", 10*time.Second)

	offsets := closeOffsets(t, e.conn, "m")
	deleteAll(t, e.conn, offsets+"/a")
	want := `{"test_cluster":{"m":{"*":null}}}` + "\n"
	e.eventually(t, "", want, 10*time.Second)
	return e, want
}

// closeOffsets makes module m's offsets/ readable by ktransfer's digest
// user only (which conn then is): kmonitor, without credentials, can no
// longer list it. It returns the folder's path.
func closeOffsets(t *testing.T, conn *zk.Conn, m string) string {
	t.Helper()
	auth := zklayout.Auth{User: "ktransfer", Password: "zk-pass"}
	if err := auth.Authenticate(conn, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	offsets := zklayout.Consumers(chroot) + "/" + m + "/offsets"
	if _, err := conn.SetACL(offsets, zk.DigestACL(zk.PermAll, auth.User, auth.Password), -1); err != nil {
		t.Fatal(err)
	}
	return offsets
}
