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

// TestCommitRefusedOnceAnotherClaimExists: process A holds partition 0;
// its owner node goes (its session expired) and process B claims the
// partition, but has not stored its start offset yet. A's commit must be
// refused from the moment B's owner node exists. (Owner nodes are never
// rewritten: their version is always 0, so the version check alone passed
// for B's node; B's claim must move the offset node's version with it.)
func TestCommitRefusedOnceAnotherClaimExists(t *testing.T) {
	z := zktest.Start(t)
	conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)
	acl := zk.WorldACL(zk.PermAll)
	const chroot = "/mq/c"
	cfg := Config{ZKChroot: chroot}
	mod := Module{Name: "m", Topic: "t"}
	trA := &Transfer{cfg: cfg, zk: conn, acl: acl, id: "A"}
	trB := &Transfer{cfg: cfg, zk: conn, acl: acl, id: "B"}
	a := &module{t: trA, cfg: mod, log: slog.New(slog.DiscardHandler)}
	b := &module{t: trB, cfg: mod, log: slog.New(slog.DiscardHandler)}
	owners := zklayout.Owners(chroot, "m", "t")
	offsets := zklayout.Offsets(chroot, "m", "t")
	for _, d := range []string{owners, offsets} {
		if err := zklayout.CreateAll(conn, d, acl); err != nil {
			t.Fatal(err)
		}
	}
	owner := path.Join(owners, "0")
	if _, err := conn.Create(path.Join(offsets, "0"), []byte("5"), 0, acl); err != nil {
		t.Fatal(err)
	}
	oa, err := a.takeOwner(0, owner)
	if err != nil {
		t.Fatal(err)
	}
	_, ostat, _ := conn.Get(path.Join(offsets, "0"))
	p := &partition{m: a, id: 0, owner: owner, epoch: oa.epoch, ownerVersion: oa.version, offsetVersion: ostat.Version}
	if err := conn.Delete(owner, -1); err != nil { // A's session expired
		t.Fatal(err)
	}
	ob, err := b.takeOwner(0, owner)
	if err != nil {
		t.Fatal(err)
	}
	if ob.epoch <= oa.epoch {
		t.Errorf("B's epoch %d is not above A's %d", ob.epoch, oa.epoch)
	}
	err = trA.storeFenced([]*partition{p}, []int64{10}, []int32{p.offsetVersion})
	data, _, _ := conn.Get(path.Join(offsets, "0"))
	if err == nil {
		t.Fatalf("deposed A's commit accepted under B's claim: offset now %s", data)
	}
	if string(data) != "5" {
		t.Fatalf("offset %s, want 5", data)
	}
}
