package kmonitor_test

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// A module deleted whole and created again before kmonitor lists
// consumers/ again (a busy machine lists it late, which the test makes
// sure of): the listing finds the module it already follows. Its offsets/
// watcher has seen the module gone and returned, while its owners/
// watcher, asleep on a folder it may not read, has not: the module must
// still be followed again, not left with an owners/ watcher alone and its
// new offsets never read.
func TestModuleRecreatedBeforeConsumersListedAgain(t *testing.T) {
	kmonitor.DelayConsumersRelists(t, 2*time.Second)
	e := start(t)
	produce(t, e.kafka, "a", 0, 100)
	module := moduleWithUnreadableOwners(t, e.conn, "m")
	setOffset(t, e.conn, "m", "a", "0", "0")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":100}}}`+"\n", 10*time.Second)

	deleteAll(t, e.conn, module)
	// The offset watcher has ended: the offsets/ watcher has seen the
	// module gone, or is about to.
	e.eventually(t, "", `{"test_cluster":{}}`+"\n", 5*time.Second)
	// Not a wait for an outcome: time for the offsets/ watcher to find the
	// module gone, well before consumers/ is listed again.
	time.Sleep(300 * time.Millisecond)
	setOffset(t, e.conn, "m", "a", "0", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":99}}}`+"\n", 15*time.Second)
}

// moduleWithUnreadableOwners creates module name's znode, and its owners/
// readable only with credentials kmonitor does not have: kmonitor's
// owners/ watcher sleeps between its tries, and does not see the module go
// (a module deleted and created again between two of them). It returns
// the module's path.
func moduleWithUnreadableOwners(t *testing.T, conn *zk.Conn, name string) string {
	t.Helper()
	auth := zklayout.Auth{User: "ktransfer", Password: "zk-pass"}
	if err := auth.Authenticate(conn, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	module := zklayout.Consumers(chroot) + "/" + name
	if err := zklayout.CreateAll(conn, module, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create(module+"/owners", nil, 0, zk.DigestACL(zk.PermAll, auth.User, auth.Password)); err != nil {
		t.Fatal(err)
	}
	return module
}
