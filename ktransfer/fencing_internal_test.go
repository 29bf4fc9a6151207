package ktransfer

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
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
	trB := &Transfer{cfg: cfg, zk: zktest.ConnectSession(t, z.Addr, 10*time.Second), acl: acl, id: "B"} // a session of its own, as a process has
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
	p := &partition{m: a, id: 0, owner: owner, epoch: oa.epoch, ownerVersion: oa.version, offsetVersion: ostat.Version, session: oa.session}
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
	b := &module{t: &Transfer{cfg: cfg, zk: zktest.ConnectSession(t, z.Addr, 10*time.Second), acl: acl, id: "B"}, cfg: mod, log: slog.New(slog.DiscardHandler)}
	offset, claimed := offsetNodeClaims(t, conn, chroot)
	pa := claimed(a)
	if err := conn.Delete(pa.owner, -1); err != nil { // A's session expired
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
			p.owner, p.epoch, p.ownerVersion, p.offsetVersion, p.session = owner, o.epoch, o.version, o.offsetVersion, o.session
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

// fencingPair makes processes A and B of module m (topic t) on one
// ZooKeeper connection, with the owners and offsets folders created; claim
// takes partition 0 for one of them as claim does, without starting it.
func fencingPair(t *testing.T) (conn *zk.Conn, a, b *module, claim func(*module) *partition) {
	t.Helper()
	z := zktest.Start(t)
	conn = zktest.ConnectSession(t, z.Addr, 10*time.Second)
	acl := zk.WorldACL(zk.PermAll)
	const chroot = "/mq/c"
	cfg := Config{ZKChroot: chroot}
	mod := Module{Name: "m", Topic: "t", StartFrom: "oldest"}
	a = &module{t: &Transfer{cfg: cfg, zk: conn, acl: acl, id: "A"}, cfg: mod, log: slog.New(slog.DiscardHandler)}
	b = &module{t: &Transfer{cfg: cfg, zk: zktest.ConnectSession(t, z.Addr, 10*time.Second), acl: acl, id: "B"}, cfg: mod, log: slog.New(slog.DiscardHandler)}
	owners := zklayout.Owners(chroot, "m", "t")
	for _, d := range []string{owners, zklayout.Offsets(chroot, "m", "t")} {
		if err := zklayout.CreateAll(conn, d, acl); err != nil {
			t.Fatal(err)
		}
	}
	claim = func(m *module) *partition {
		t.Helper()
		o, err := m.takeOwner(0, path.Join(owners, "0"))
		if err != nil {
			t.Fatal(err)
		}
		p := newPartition(m, 0, context.Background())
		p.owner, p.epoch, p.ownerVersion, p.offsetVersion, p.session = path.Join(owners, "0"), o.epoch, o.version, o.offsetVersion, o.session
		return p
	}
	return conn, a, b, claim
}

// TestFirstStartRefusedOnceAnotherClaimExists attacks "once another
// process claimed a partition, the old owner's writes fail, its start
// offset too" for a partition that has no offset node yet (its first
// start): no claim can rewrite a node that is not there, so both claims
// expect none. Process A claims partition 0 and pauses until its session
// expired; process B claims it; A, resumed, must not create the offset
// node under B's claim, and B's start must go on. (A created it: the owner
// check passed for B's node, at version 0 as every owner node, and B was
// deposed for nothing while A pushed under B's claim.)
func TestFirstStartRefusedOnceAnotherClaimExists(t *testing.T) {
	conn, a, b, claim := fencingPair(t)
	adm := kafkaAdmin(t, 1) // A and B resolve where to start
	a.t.adm, b.t.adm = adm, adm
	pa := claim(a)
	if err := conn.Delete(pa.owner, -1); err != nil { // A's session expired
		t.Fatal(err)
	}
	pb := claim(b)
	if _, err := pa.startOffset(context.Background()); !errors.Is(err, errDeposed) {
		t.Errorf("A's first start under B's claim: %v, want %v", err, errDeposed)
	}
	if _, err := pb.startOffset(context.Background()); err != nil {
		t.Errorf("B's start: %v (deposed for nothing)", err)
	}
}

// TestFirstStartNotHeldByAnotherPartitionsClaim attacks "a claimed
// partition starts at once" where its first start's fencing meets the
// claims of the module's other partitions: B claims partition 1 between
// A's read of its owner node of partition 0 and A's create of the offset
// node. A's start must go through at the first try, neither deposed nor
// resolved and written again. (The create checked the owners folder's
// version, which B's claim moved: A's start was tried again.) A claim of
// the same partition in that window is not fenced: see startOffset.
func TestFirstStartNotHeldByAnotherPartitionsClaim(t *testing.T) {
	_, a, b, claim := fencingPair(t)
	a.t.adm = kafkaAdmin(t, 1)
	pa := claim(a)
	var tries atomic.Int32
	hook := func() {
		if tries.Add(1) > 1 {
			return
		}
		if _, err := b.takeOwner(1, path.Join(path.Dir(pa.owner), "1")); err != nil {
			t.Error(err)
		}
	}
	beforeStartWrite.Store(&hook)
	t.Cleanup(func() { beforeStartWrite.Store(nil) })
	if _, err := pa.startOffset(context.Background()); err != nil {
		t.Fatalf("A's start after a claim of another partition: %v (deposed for nothing)", err)
	}
	if n := tries.Load(); n != 1 {
		t.Errorf("A's start wrote %d times, want once", n)
	}
}

// TestUnansweredWriteNotTakenForTheNextClaimsRewrite attacks the same
// promise through a write that got no answer, on the commit path, which
// reads no owner node before writing: A's write of offset 5, the stored
// offset again (a commit with nothing pushed since, a restart storing the
// committed offset), was not applied; A's session expired and B claimed
// the partition, rewriting the node (5, one version further). settle must
// not take B's rewrite for A's own write: A's next write must fail, and
// B's start go on. (settle took it, and A's next commit wrote on from B's
// rewrite, under B's claim, whose start was then refused.)
func TestUnansweredWriteNotTakenForTheNextClaimsRewrite(t *testing.T) {
	conn, a, b, claim := fencingPair(t)
	offset := path.Join(zklayout.Offsets("/mq/c", "m", "t"), "0")
	if _, err := conn.Create(offset, []byte("5"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	pa := claim(a)
	pa.unsure, pa.unsureValue = true, 5               // A's write, sent and not applied
	if err := conn.Delete(pa.owner, -1); err != nil { // A's session expired
		t.Fatal(err)
	}
	pb := claim(b)
	if !a.t.settle(pa) {
		t.Fatal("settle: ZooKeeper did not answer")
	}
	if err := a.t.storeFenced([]*partition{pa}, []int64{5}, []int32{pa.offsetVersion}); err == nil {
		t.Error("A's next write went through under B's claim")
	}
	if _, err := pb.startOffset(context.Background()); err != nil {
		t.Errorf("B's start: %v (deposed for nothing)", err)
	}
}

// kafkaAdmin is an admin client of a kfake cluster with topic t (the
// given number of partitions).
func kafkaAdmin(t *testing.T, partitions int32) *kadm.Client {
	t.Helper()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: partitions}})
	opts, err := kafkaconf.Default().Opts("ktransfer", k.ListenAddrs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// TestCommitRefusedAfterTheOffsetNodeCameBackAtTheSameVersion attacks the
// fence where it compares versions only: process A holds partition 0 and
// pauses; an operator deletes the offset node (to restart the partition at
// its newest record); A's session expires; B claims the partition, creates
// the offset node anew and commits until its version is the one A last
// wrote. A resumes in a new session: its commit carried the owner node's
// version (0, as every owner node's, B's too) and the offset node's, both
// as A expected, and overwrote B's offset with A's stale one (records
// skipped or pushed twice by B). A claim made in another session than the
// client's writes nothing.
func TestCommitRefusedAfterTheOffsetNodeCameBackAtTheSameVersion(t *testing.T) {
	z := zktest.Start(t)
	conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)
	acl := zk.WorldACL(zk.PermAll)
	const chroot = "/mq/c"
	mod := Module{Name: "m", Topic: "t"}
	trA := &Transfer{cfg: Config{ZKChroot: chroot}, zk: zktest.ConnectSession(t, z.Addr, 10*time.Second), acl: acl, id: "A"}
	trB := &Transfer{cfg: Config{ZKChroot: chroot}, zk: conn, acl: acl, id: "B"}
	a := &module{t: trA, cfg: mod, log: slog.New(slog.DiscardHandler)}
	b := &module{t: trB, cfg: mod, log: slog.New(slog.DiscardHandler)}
	offset, claim := offsetNodeClaims(t, conn, chroot)
	pa := claim(a)
	if err := trA.storeFenced([]*partition{pa}, []int64{7}, []int32{pa.offsetVersion}); err != nil {
		t.Fatalf("A's commit: %v", err)
	}
	if err := conn.Delete(offset, -1); err != nil { // by hand
		t.Fatal(err)
	}
	// A's session expires; its client is replaced (a new session).
	trA.zk.Close()
	trA.zk = zktest.ConnectSession(t, z.Addr, 10*time.Second)
	pb := claim(b)
	if pb.offsetVersion != -1 {
		t.Fatalf("B's claim found the offset node (version %d)", pb.offsetVersion)
	}
	if err := trB.storeFenced([]*partition{pb}, []int64{100}, []int32{-1}); err != nil {
		t.Fatalf("B's start: %v", err)
	}
	for pb.offsetVersion < pa.offsetVersion {
		if err := trB.storeFenced([]*partition{pb}, []int64{101 + int64(pb.offsetVersion)}, []int32{pb.offsetVersion}); err != nil {
			t.Fatalf("B's commit: %v", err)
		}
	}
	before, _, _ := conn.Get(offset)
	err := trA.storeFenced([]*partition{pa}, []int64{8}, []int32{pa.offsetVersion})
	after, _, _ := conn.Get(offset)
	if err == nil || string(after) != string(before) {
		t.Errorf("A's commit after its session expired, under B's claim: %v; offset %s, was %s (B's)", err, after, before)
	}
}

// offsetNodeClaims makes module m's folders for topic t under chroot and
// partition 0's offset node (offset 5), and returns that node's path and
// a claim of the partition as claim makes it (its owner node created, the
// offset node rewritten, the session noted).
func offsetNodeClaims(t *testing.T, conn *zk.Conn, chroot string) (offset string, claim func(*module) *partition) {
	t.Helper()
	acl := zk.WorldACL(zk.PermAll)
	owners, offsets := zklayout.Owners(chroot, "m", "t"), zklayout.Offsets(chroot, "m", "t")
	for _, d := range []string{owners, offsets} {
		if err := zklayout.CreateAll(conn, d, acl); err != nil {
			t.Fatal(err)
		}
	}
	owner, offset := path.Join(owners, "0"), path.Join(offsets, "0")
	if _, err := conn.Create(offset, []byte("5"), 0, acl); err != nil {
		t.Fatal(err)
	}
	return offset, func(m *module) *partition {
		t.Helper()
		o, err := m.takeOwner(0, owner)
		if err != nil {
			t.Fatal(err)
		}
		p := newPartition(m, 0, context.Background())
		p.owner, p.epoch, p.ownerVersion, p.offsetVersion, p.session = owner, o.epoch, o.version, o.offsetVersion, o.session
		return p
	}
}
