package ktransfer

import (
	"errors"
	"log/slog"
	"path"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestOwnerNodeReplacedWithoutAGap: instance A claims partition 0 whose
// owner node is one A left with its own id (a claim given up with a lost
// session). A replaces the node; instance B, watching it, tries to claim
// the partition the moment the node is deleted. The partition must never
// look free: B's claim fails and A holds the partition. (Before, A deleted
// the node and created it again in two steps: B took the partition in
// between, a needless move, and A gave its claim up as held by another.)
func TestOwnerNodeReplacedWithoutAGap(t *testing.T) {
	z := zktest.Start(t)
	conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)  // A's session
	old := zktest.ConnectSession(t, z.Addr, 10*time.Second)   // A's earlier session, still open
	other := zktest.ConnectSession(t, z.Addr, 10*time.Second) // B's session
	acl := zk.WorldACL(zk.PermAll)
	const chroot = "/mq/c"
	a := &module{t: &Transfer{cfg: Config{ZKChroot: chroot}, zk: conn, acl: acl, id: "A"},
		cfg: Module{Name: "m", Topic: "t"}, log: slog.New(slog.DiscardHandler)}
	owners := zklayout.Owners(chroot, "m", "t")
	if err := zklayout.CreateAll(conn, owners, acl); err != nil {
		t.Fatal(err)
	}
	node := path.Join(owners, "0")

	for round := range 10 {
		if _, err := old.Create(node, []byte("A"), zk.FlagEphemeral, acl); err != nil {
			t.Fatalf("round %d: A's earlier owner node: %v", round, err)
		}
		_, _, ev, err := other.ExistsW(node)
		if err != nil {
			t.Fatal(err)
		}
		bClaim := make(chan error, 1)
		go func() {
			e := <-ev
			if e.Type != zk.EventNodeDeleted {
				bClaim <- errors.New(e.Type.String())
				return
			}
			_, err := other.Create(node, []byte("B"), zk.FlagEphemeral, acl)
			bClaim <- err
		}()

		_, aerr := a.takeOwner(0, node)
		var berr error
		select {
		case berr = <-bClaim:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: B's watch never fired", round)
		}
		data, stat, err := conn.Get(node)
		switch {
		case berr == nil:
			t.Fatalf("round %d: B created the owner node while A replaced its own (A: %v): the partition looked free", round, aerr)
		case aerr != nil:
			t.Fatalf("round %d: A's claim: %v", round, aerr)
		case err != nil || string(data) != "A" || stat.EphemeralOwner != conn.SessionID():
			t.Fatalf("round %d: owner node %q (%v), want A's new claim", round, data, err)
		}
		if err := conn.Delete(node, -1); err != nil {
			t.Fatal(err)
		}
	}
}
