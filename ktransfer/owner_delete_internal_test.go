package ktransfer

import (
	"log/slog"
	"path"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// ownerRace sets up instances A and B of module m on topic t, with
// partition 0's owner node a persistent one holding owner, and returns
// them with the owner node's path.
func ownerRace(t *testing.T, owner string) (a, b *module, conn *zk.Conn, node string) {
	t.Helper()
	z := zktest.Start(t)
	conn = zktest.ConnectSession(t, z.Addr, 10*time.Second)
	acl := zk.WorldACL(zk.PermAll)
	const chroot = "/mq/c"
	cfg := Config{ZKChroot: chroot}
	mod := Module{Name: "m", Topic: "t"}
	// Each instance its own session, as processes have: a node of A's
	// session is A's, whatever it holds (ownsNode).
	connB := zktest.ConnectSession(t, z.Addr, 10*time.Second)
	a = &module{t: &Transfer{cfg: cfg, zk: conn, acl: acl, id: "A"}, cfg: mod, log: slog.New(slog.DiscardHandler)}
	b = &module{t: &Transfer{cfg: cfg, zk: connB, acl: acl, id: "B"}, cfg: mod, log: slog.New(slog.DiscardHandler)}
	owners := zklayout.Owners(chroot, "m", "t")
	if err := zklayout.CreateAll(conn, owners, acl); err != nil {
		t.Fatal(err)
	}
	node = path.Join(owners, "0")
	if _, err := conn.Create(node, []byte(owner), 0, acl); err != nil { // persistent
		t.Fatal(err)
	}
	t.Cleanup(func() { beforeOwnerDelete.Store(nil) })
	return a, b, conn, node
}

// claimedBetween makes B claim partition 0 once, in the step between A's
// read of the owner node and A's delete of it, and returns B's claim.
func claimedBetween(t *testing.T, b *module, node string) *claimOwner {
	var ob claimOwner
	f := func() {
		beforeOwnerDelete.Store(nil)
		var err error
		if ob, err = b.takeOwner(0, node); err != nil {
			t.Errorf("B's claim: %v", err)
		}
	}
	beforeOwnerDelete.Store(&f)
	return &ob
}

// checkBHolds fails unless partition 0's owner node is B's claim.
func checkBHolds(t *testing.T, conn *zk.Conn, node string, ob *claimOwner) {
	t.Helper()
	if ob.epoch == 0 {
		t.Fatal("B never claimed the partition")
	}
	data, stat, err := conn.Get(node)
	switch {
	case err != nil:
		t.Errorf("B's owner node (epoch %d) was deleted: %v; B pushes the partition while another instance may claim it", ob.epoch, err)
	case string(data) != "B" || stat.Czxid != ob.epoch:
		t.Errorf("owner node %q epoch %d, want B's of epoch %d", data, stat.Czxid, ob.epoch)
	}
}

// TestOwnerDeleteSparesANodeCreatedMeanwhile: A releases partition 0
// whose owner node (a persistent one naming A, left by an earlier run) it
// has read; before A's delete, B deletes that node and creates its own
// claim (every owner node is created at version 0). A's delete must not
// remove B's claim: it checked only the version, 0 again.
func TestOwnerDeleteSparesANodeCreatedMeanwhile(t *testing.T) {
	a, b, conn, node := ownerRace(t, "A")
	ob := claimedBetween(t, b, node)
	if err := a.deleteOwnerOnce(0, 0); err != nil {
		t.Logf("A's delete: %v", err)
	}
	checkBHolds(t, conn, node, ob)
}

// TestPersistentOwnerDeleteSparesANodeCreatedMeanwhile: A's claim finds a
// persistent owner node of another name (no live claim) and deletes it;
// before A's delete, B does the same and creates its own claim. A's delete
// must not remove B's claim.
func TestPersistentOwnerDeleteSparesANodeCreatedMeanwhile(t *testing.T) {
	a, b, conn, node := ownerRace(t, "old-host-1-1-0000")
	ob := claimedBetween(t, b, node)
	oa, err := a.takeOwner(0, node)
	if err == nil {
		t.Errorf("A claimed the partition (epoch %d) while B held it", oa.epoch)
	}
	checkBHolds(t, conn, node, ob)
}
