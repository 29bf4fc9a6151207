package ktransfer

import (
	"context"
	"errors"
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

// TestStartOffsetRefusedOnceAnotherClaimExists attacks "a deposed process
// never writes an offset" at a claim's first write, its start offset:
// process A claims partition 0 and, before it stores its start offset,
// pauses until its session expired; process B claims the partition and
// stores its start. A, resumed in a new session, must not write the
// offset node, and B's commits must go on. (Every owner node is at
// version 0, so the owner check passed for B's node, and A wrote its
// start with the offset node's version as it read it just before: B's
// next commit was refused and B dropped the partition for nothing.)
func TestStartOffsetRefusedOnceAnotherClaimExists(t *testing.T) {
	z := zktest.Start(t)
	conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)
	acl := zk.WorldACL(zk.PermAll)
	const chroot = "/mq/c"
	cfg := Config{ZKChroot: chroot}
	mod := Module{Name: "m", Topic: "t"}
	a := &module{t: &Transfer{cfg: cfg, zk: conn, acl: acl, id: "A"}, cfg: mod, log: slog.New(slog.DiscardHandler)}
	b := &module{t: &Transfer{cfg: cfg, zk: conn, acl: acl, id: "B"}, cfg: mod, log: slog.New(slog.DiscardHandler)}
	owners := zklayout.Owners(chroot, "m", "t")
	offsets := zklayout.Offsets(chroot, "m", "t")
	for _, d := range []string{owners, offsets} {
		if err := zklayout.CreateAll(conn, d, acl); err != nil {
			t.Fatal(err)
		}
	}
	owner, offset := path.Join(owners, "0"), path.Join(offsets, "0")
	if _, err := conn.Create(offset, []byte("5"), 0, acl); err != nil {
		t.Fatal(err)
	}
	claimed := func(m *module) *partition {
		o, err := m.takeOwner(0, owner)
		if err != nil {
			t.Fatal(err)
		}
		p := newPartition(m, 0, context.Background()) // as claim makes it
		p.owner, p.epoch, p.ownerVersion, p.offsetVersion = owner, o.epoch, o.version, o.offsetVersion
		return p
	}
	pa := claimed(a)
	if err := conn.Delete(owner, -1); err != nil { // A's session expired
		t.Fatal(err)
	}
	pb := claimed(b)
	if _, err := pb.startOffset(context.Background()); err != nil {
		t.Fatalf("B's start: %v", err)
	}
	_, before, _ := conn.Get(offset)
	if _, err := pa.startOffset(context.Background()); !errors.Is(err, errDeposed) {
		_, after, _ := conn.Get(offset)
		t.Errorf("A's start under B's claim: %v, want %v (offset node version %d, was %d after B's start)", err, errDeposed, after.Version, before.Version)
	}
	if err := b.t.storeFenced([]*partition{pb}, []int64{6}, []int32{pb.offsetVersion}); err != nil {
		t.Errorf("B's commit after A's start: %v", err)
	}
}

// TestStartRetriedAfterUnansweredWriteKeepsTheClaim: a claim's start
// offset write got no answer (the connection broke) but was applied, to
// an offset node the claim rewrote or to one it created. The start's next
// try must take that write for the claim's own, not for another
// writer's: the claim is not deposed (and claimed again) for nothing.
func TestStartRetriedAfterUnansweredWriteKeepsTheClaim(t *testing.T) {
	for _, stored := range []bool{true, false} {
		t.Run(map[bool]string{true: "rewritten", false: "created"}[stored], func(t *testing.T) {
			z := zktest.Start(t)
			conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)
			acl := zk.WorldACL(zk.PermAll)
			const chroot = "/mq/c"
			a := &module{t: &Transfer{cfg: Config{ZKChroot: chroot}, zk: conn, acl: acl, id: "A"}, cfg: Module{Name: "m", Topic: "t"}, log: slog.New(slog.DiscardHandler)}
			owners := zklayout.Owners(chroot, "m", "t")
			offsets := zklayout.Offsets(chroot, "m", "t")
			for _, d := range []string{owners, offsets} {
				if err := zklayout.CreateAll(conn, d, acl); err != nil {
					t.Fatal(err)
				}
			}
			owner, offset := path.Join(owners, "0"), path.Join(offsets, "0")
			if stored {
				if _, err := conn.Create(offset, []byte("5"), 0, acl); err != nil {
					t.Fatal(err)
				}
			}
			o, err := a.takeOwner(0, owner)
			if err != nil {
				t.Fatal(err)
			}
			p := newPartition(a, 0, context.Background())
			p.owner, p.epoch, p.ownerVersion, p.offsetVersion = owner, o.epoch, o.version, o.offsetVersion
			// The write applied, its answer lost.
			if stored {
				_, err = conn.Set(offset, []byte("5"), o.offsetVersion)
			} else {
				_, err = conn.Create(offset, []byte("5"), 0, acl)
			}
			if err != nil {
				t.Fatal(err)
			}
			p.unsure, p.unsureValue = true, 5
			start, err := p.startOffset(context.Background())
			if err != nil || start != 5 {
				t.Fatalf("start after an unanswered write of 5: %d, %v", start, err)
			}
			if err := a.t.storeFenced([]*partition{p}, []int64{6}, []int32{p.offsetVersion}); err != nil {
				t.Errorf("commit after the start: %v", err)
			}
		})
	}
}
