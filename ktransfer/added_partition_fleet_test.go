package ktransfer_test

import (
	"slices"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestAddedPartitionClaimedByALaterProcessPushedFromItsFirstRecord: with
// start_from: newest, a partition added to the topic while the fleet runs
// is pushed from its first record, whichever process claims it. Process
// A runs before the partition is added; process B starts after it (a
// spare, a restart) and, least loaded, takes the new partition. For B the
// partition was in the first list it read: B must still not take it for
// one the module started on, and skip the records written to it between
// the add and B's claim.
func TestAddedPartitionClaimedByALaterProcessPushedFromItsFirstRecord(t *testing.T) {
	e, b, m, _ := startNewestOnHistory(t)

	addedPartitionTakenByALaterProcess(t, e, b, m)
	// The added partition has its offset now: one deleted by an operator
	// later starts again at the newest record, as an old partition's.
	data, _, err := e.conn.Get(zklayout.Offsets(chroot, "m", "t"))
	if n, ok := zklayout.ParseOffsetsTopic(data); err != nil || !ok || n != 2 {
		t.Errorf("offsets node data %q (%v): want 2 partitions with their offsets recorded", data, err)
	}
}

// addedPartitionTakenByALaterProcess adds partition 1 to topic t, which
// a process of module m reads, writes two records to it, starts a second
// process of m, which takes the new partition, and checks both records
// were pushed to b.
func addedPartitionTakenByALaterProcess(t *testing.T, e *env, b *backend, m ktransfer.Module) {
	t.Helper()
	addPartition(t, e, "p1-0", "p1-1")

	// B reads the topic's two partitions at its start; A checks them every
	// 10 s and has not seen the new one yet: B, holding none, takes it.
	first := e.owners(t, "m", "t")["0"]
	e.start(t, m)
	waitFor(t, "the new partition's start stored", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 1)[0] != '<' })
	if o := e.owners(t, "m", "t"); o["1"] == "" || o["1"] == first {
		t.Fatalf("the process started after the add does not hold the new partition (owners %v, the first process %s)", o, first)
	}
	waitFor(t, "the new partition committed at its end", 30*time.Second, func() bool { return e.storedOffset(t, "m", "t", 1) == "2" })
	var bodies []string
	for _, p := range b.got() {
		if p.partition == "1" {
			bodies = append(bodies, p.body)
		}
	}
	if !slices.Equal(bodies, []string{"p1-0", "p1-1"}) {
		t.Errorf("pushed %v, want the new partition's two records, written before the process that took it started", bodies)
	}
}

// TestAddedPartitionPushedFromItsFirstRecordAfterAnUpgrade: the same on a
// module whose offsets were first stored by an older ktransfer (its
// offsets/<topic> node records no partition count): once the fleet runs
// this version, a partition added later is pushed from its first record
// by whichever process takes it.
func TestAddedPartitionPushedFromItsFirstRecordAfterAnUpgrade(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", [][2]string{{"k", "history"}})
	dir := zklayout.Offsets(chroot, "m", "t")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(dir+"/0", []byte("1"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.StartFrom = "newest"
	e.start(t, m)
	e.produce(t, "t", [][2]string{{"k", "p0"}})
	waitFor(t, "partition 0 read on from its stored offset", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "2" })
	addedPartitionTakenByALaterProcess(t, e, b, m)
}

// TestAddedPartitionCountMovedOnAtALaterClaim: the count of the module's
// offsets/<topic> node moves past an added partition once it has an
// offset, so that an operator who deletes that partition's offset node
// has it start again at the newest record. When the write of the count
// fails at the partition's first claim (a ZooKeeper blip, or another
// process's write of it at the same moment), a later claim of the
// partition writes it: else the count stays below the partition for
// good, and its offset node deleted, the partition starts again at its
// first record since the module's start, pushing again all it pushed.
func TestAddedPartitionCountMovedOnAtALaterClaim(t *testing.T) {
	e, b, m, a := startNewestOnHistory(t)
	dir := zklayout.Offsets(chroot, "m", "t")
	if n := offsetsCount(e, dir); n != 1 {
		t.Fatalf("offsets node records %d partitions, want 1", n)
	}

	// The count cannot be written for a while; offsets can.
	setACL(t, e, dir, zk.PermRead|zk.PermCreate|zk.PermDelete|zk.PermAdmin)
	addPartition(t, e, "p1-0")
	second := e.start(t, m) // holds nothing: takes the new partition
	waitFor(t, "the new partition's record pushed and committed", 30*time.Second, func() bool { return e.storedOffset(t, "m", "t", 1) == "1" })
	setACL(t, e, dir, zk.PermAll)

	// The second process stops: the first takes partition 1, with its
	// offset stored, and can write the count now.
	first := e.owners(t, "m", "t")["0"]
	if err := second.stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first process to take partition 1", 30*time.Second, func() bool { return e.owners(t, "m", "t")["1"] == first })
	for deadline := time.Now().Add(30 * time.Second); offsetsCount(e, dir) != 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := offsetsCount(e, dir); n != 2 {
		t.Errorf("offsets node records %d partitions after partition 1's claim, want 2", n)
	}

	// An operator deletes partition 1's offset node: it starts again at
	// the newest record.
	deleteOffsetAndRestart(t, e, b, m, a)
}

// TestAddedPartitionCountMovedOnWhileItsClaimLasts: the write of the
// count fails at the first claim of an added partition (ZooKeeper refuses
// it for a while) and the partition stays with the process that claimed
// it: no later claim comes to write the count. It must still be written
// once ZooKeeper takes it again: else an operator who stops the fleet and
// deletes the partition's offset node, to have it start at the newest
// record, gets it started at its first record since the module's start,
// its records pushed again.
func TestAddedPartitionCountMovedOnWhileItsClaimLasts(t *testing.T) {
	e, b, m, first := startNewestOnHistory(t)
	dir := zklayout.Offsets(chroot, "m", "t")

	// The count cannot be written for a while; offsets can.
	setACL(t, e, dir, zk.PermRead|zk.PermCreate|zk.PermDelete|zk.PermAdmin)
	addPartition(t, e, "p1-0")
	second := e.start(t, m) // holds nothing: takes the new partition
	waitFor(t, "the new partition's record pushed and committed", 30*time.Second, func() bool { return e.storedOffset(t, "m", "t", 1) == "1" })
	setACL(t, e, dir, zk.PermAll)
	for deadline := time.Now().Add(30 * time.Second); offsetsCount(e, dir) != 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := offsetsCount(e, dir); n != 2 {
		t.Errorf("offsets node records %d partitions once it can be written again, want 2", n)
	}

	// The operator stops the fleet and deletes partition 1's offset node:
	// it starts again at the newest record.
	deleteOffsetAndRestart(t, e, b, m, first, second)
}

// offsetsCount returns the partition count the offsets/<topic> node dir
// records, 0 when it cannot be read.
func offsetsCount(e *env, dir string) int32 {
	data, _, err := e.conn.Get(dir)
	n, ok := zklayout.ParseOffsetsTopic(data)
	if err != nil || !ok {
		return 0
	}
	return n
}

// setACL gives everyone perms on the node path.
func setACL(t *testing.T, e *env, path string, perms int32) {
	t.Helper()
	if _, err := e.conn.SetACL(path, zk.WorldACL(perms), -1); err != nil {
		t.Fatal(err)
	}
}

// timesPushed counts the pushes to b of partition's record body.
func timesPushed(b *backend, partition, body string) int {
	var n int
	for _, p := range b.got() {
		if p.partition == partition && p.body == body {
			n++
		}
	}
	return n
}

// deleteOffsetAndRestart stops the processes running, deletes the offset
// node of partition 1 of module m (topic t), starts a process of m again
// and checks that partition 1 started again at its newest record: its
// record p1-0 was pushed once, not again.
func deleteOffsetAndRestart(t *testing.T, e *env, b *backend, m ktransfer.Module, running ...*running) {
	t.Helper()
	for _, r := range running {
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.conn.Delete(zklayout.Offsets(chroot, "m", "t")+"/1", -1); err != nil {
		t.Fatal(err)
	}
	e.start(t, m)
	waitFor(t, "partition 1's start stored again", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 1) == "1" })
	if again := timesPushed(b, "1", "p1-0"); again != 1 {
		t.Errorf("partition 1's record pushed %d times, want once: its offset node deleted, it started again before the newest record", again)
	}
}
