package ktransfer_test

// Tests of the fleet's promises under faults (issue 12's findings): a
// released partition's retries stop before another process pushes it,
// a lost session stops every partition within 2/3 of the session timeout
// of the last answer, a deposed process never commits, a partition that
// cannot start is retried, an owner node that cannot be deleted is
// deleted later, every module comes back after an outage, and the window
// is empty whenever a process is idle.

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zkserver"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestReleaseStopsRetriesBeforeHandOver: the first process's backend
// path fails every push; a second process (its own path, healthy) joins and
// takes a partition. Once the second process pushed a partition, the first
// must never push it again: its retries end with the release. (Before,
// release waited shutdown_timeout_ms, deleted the owner node and left the
// retry running until the process exited: the old retry landed after the
// new owner's pushes of the key's later records.)
func TestReleaseStopsRetriesBeforeHandOver(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if strings.HasPrefix(p.path, "/a/") {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	first := module("m", "t", b.URL)
	first.Protocol.URI = "/a/{#TOPIC}?key={#KEY}"
	first.WorkerNum = 64 // a worker for each of the 40 keys: every one is retried
	produceN(t, e, 0, 40)
	// 10 s sessions: a loaded machine's stall of 2-3 s must not expire
	// one (3 s by default) and start the hand-over over again.
	e.startWith(t, 10000, first)
	waitFor(t, "the first process failing on both partitions", 10*time.Second, func() bool {
		seen := map[string]bool{}
		for _, p := range b.got() {
			seen[p.partition] = true
		}
		return len(seen) == 2
	})
	second := module("m", "t", b.URL)
	second.Protocol.URI = "/b/{#TOPIC}?key={#KEY}"
	second.WorkerNum = 64
	e.startWith(t, 10000, second)
	waitFor(t, "the second process pushing", 30*time.Second, func() bool {
		for _, p := range b.got() {
			if strings.HasPrefix(p.path, "/b/") {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second) // the first process's retries come every 10-100 ms
	firstB := map[string]time.Time{}
	for _, p := range b.got() {
		if _, ok := firstB[p.partition]; !ok && strings.HasPrefix(p.path, "/b/") {
			firstB[p.partition] = p.at
		}
	}
	for _, p := range b.got() {
		if at, ok := firstB[p.partition]; ok && strings.HasPrefix(p.path, "/a/") && !p.at.Before(at) {
			t.Fatalf("partition %s: the first process pushed offset %s at %s, after the second process's first push at %s",
				p.partition, p.offset, p.at.Format("15:04:05.000"), at.Format("15:04:05.000"))
		}
	}
}

// TestSessionLossStopsEveryPartitionInTime freezes ZooKeeper (SIGSTOP)
// while a push of every partition hangs. Every partition must stop within
// 2/3 of the session timeout of the last answer, all at once. (Before, the
// count started at the client's Disconnected event, itself 2/3 of the
// timeout late, and the partitions were released one by one, each waiting
// for its hanging push: another process could push them meanwhile.)
func TestSessionLossStopsEveryPartitionInTime(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 4}})
	z := zktest.Start(t)
	e := &env{kafka: k, zkAdr: z.Addr, conn: envConn(t, z.Addr), kc: kafkaconf.Default()}
	release := make(chan struct{})
	b := newBackend(t, func(int, push, http.ResponseWriter) { <-release })
	t.Cleanup(func() { close(release) })
	m := module("m", "t", b.URL)
	m.WorkerNum = 64 // a worker for each of the 40 keys: every partition has a push hanging
	// A 4.5 s session: the partitions stop 3 s after the last answer (and
	// a check every 0.3 s); counted from the client's Disconnected event,
	// itself 2/3 of the session after its last read, they stopped 6 s
	// after it. Both are counted from the last answer (the send of the
	// last heartbeat answered, up to a heartbeat, 0.75 s, before the
	// freeze), not from the freeze: the bound, 5.5 s, leaves a loaded
	// host 2.2 s and the old count always fails it.
	r := e.startWith(t, 4500, m)
	waitFor(t, "all partitions", 10*time.Second, func() bool { return len(r.tr.Status()[0].Partitions) == 4 })
	produceN(t, e, 0, 80)
	waitFor(t, "a push of every partition hanging", 10*time.Second, func() bool {
		seen := map[string]bool{}
		for _, p := range b.got() {
			seen[p.partition] = true
		}
		return len(seen) == 4
	})
	time.Sleep(300 * time.Millisecond) // a heartbeat or two answered
	if err := syscall.Kill(z.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	t.Cleanup(func() { _ = syscall.Kill(z.Pid(), syscall.SIGCONT) })
	var firstGone, allGone time.Duration
	for time.Since(frozen) < 10*time.Second {
		n := len(r.tr.Status()[0].Partitions)
		if n < 4 && firstGone == 0 {
			firstGone = time.Since(frozen)
		}
		if n == 0 {
			allGone = time.Since(frozen)
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Read after the partitions stopped (a heartbeat sent before the freeze
	// may have been answered after it) and before the thaw.
	answered := frozen.Sub(ktransfer.LastAnswer(r.tr))
	_ = syscall.Kill(z.Pid(), syscall.SIGCONT)
	t.Logf("ZooKeeper frozen %v after the last answer: first partition stopped after %v, all after %v (session 4.5 s, grace 3 s)",
		answered.Round(time.Millisecond), firstGone, allGone)
	switch {
	case allGone == 0:
		t.Fatalf("partitions still held 10 s after ZooKeeper froze")
	case answered+allGone > 5500*time.Millisecond:
		t.Errorf("all partitions stopped %v after ZooKeeper's last answer (frozen %v after it); want within 2/3 of the 4.5 s session of the last answer",
			(answered + allGone).Round(time.Millisecond), answered.Round(time.Millisecond))
	case allGone-firstGone > time.Second:
		// One by one, each release waited for its hanging push: never.
		t.Errorf("partitions stopped one by one over %v", allGone-firstGone)
	}
	waitFor(t, "partitions claimed again after ZooKeeper thawed", 20*time.Second, func() bool { return len(r.tr.Status()[0].Partitions) == 4 })
}

// TestDeposedProcessNeverCommits: another owner takes the partition (its
// owner node replaced, its start offset stored) under a running process.
// The process must never write the partition's offset again, and must stop
// pushing it. (Before, commits were plain writes: the deposed process
// overwrote the new owner's offset.)
func TestDeposedProcessNeverCommits(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, nil)
	r := e.start(t, module("m", "t", b.URL))
	produceN(t, e, 0, 10)
	waitFor(t, "offset 10 committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "10" })
	owner := zklayout.Owners(chroot, "m", "t") + "/0"
	_, stat, err := e.conn.Get(owner)
	if err != nil {
		t.Fatal(err)
	}
	// One transaction: between a delete and a create the process, woken by
	// the delete, may claim the partition again first.
	if _, err := e.conn.Multi(
		&zk.DeleteRequest{Path: owner, Version: stat.Version},
		&zk.CreateRequest{Path: owner, Data: []byte("intruder"), Acl: zk.WorldACL(zk.PermAll), Flags: zk.FlagEphemeral},
	); err != nil {
		t.Fatalf("replace %s: %v", owner, err)
	}
	if _, err := e.conn.Set(zklayout.Offsets(chroot, "m", "t")+"/0", []byte("3"), -1); err != nil {
		t.Fatal(err)
	}
	produceN(t, e, 10, 30)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if got := e.storedOffset(t, "m", "t", 0); got != "3" {
			t.Fatalf("the deposed process wrote offset %s over the new owner's 3", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, "the deposed process to drop the partition", 5*time.Second, func() bool { return len(r.tr.Status()[0].Partitions) == 0 })
	if o := e.owners(t, "m", "t")["0"]; o != "intruder" {
		t.Errorf("owner node now %q, want the new owner's", o)
	}
}

// TestPartitionStartFailureIsRetried: one partition cannot start (its
// stored offset is unreadable). The module goes on with the others and
// starts it once it can. (Before, one partition's start error stopped the
// module and the process.)
func TestPartitionStartFailureIsRetried(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	dir := zklayout.Offsets(chroot, "m", "t")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(dir+"/0", []byte("not an offset"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, nil)
	produceN(t, e, 0, 80)
	r := e.start(t, module("m", "t", b.URL))
	waitFor(t, "partition 1's records", 10*time.Second, func() bool {
		n := 0
		for _, p := range b.got() {
			if p.partition == "1" {
				n++
			}
		}
		return n > 0 && e.storedOffset(t, "m", "t", 1) != ""
	})
	time.Sleep(time.Second) // several retries of partition 0
	if _, err := e.conn.Set(dir+"/0", []byte("0"), -1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all 80 records once partition 0 can start", 15*time.Second, func() bool {
		seen := map[string]bool{}
		for _, p := range b.got() {
			seen[p.body] = true
		}
		return len(seen) == 80
	})
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestUndeletableOwnerNodeIsDeletedLater: the release's delete of an owner
// node fails (ZooKeeper refuses it); the node must not stay for the rest
// of the session: the next reassignment deletes it, and the partition's
// new owner takes it. (Before, a failed Get/Delete in release was ignored:
// nobody pushed the partition until the process's session ended.)
func TestUndeletableOwnerNodeIsDeletedLater(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	e.start(t, m)
	waitFor(t, "both partitions owned", 10*time.Second, func() bool { return len(e.owners(t, "m", "t")) == 2 })
	dir := zklayout.Owners(chroot, "m", "t")
	// Children of dir can be created, not deleted.
	noDelete := zk.WorldACL(zk.PermAll &^ zk.PermDelete)
	if _, err := e.conn.SetACL(dir, noDelete, -1); err != nil {
		t.Fatal(err)
	}
	second := e.start(t, m)
	waitFor(t, "the second instance registered", 10*time.Second, func() bool {
		ids, _, _ := e.conn.Children(zklayout.ConsumerIDs(chroot, "m"))
		return len(ids) == 2
	})
	time.Sleep(1500 * time.Millisecond) // the first one's release fails to delete
	if _, err := e.conn.SetACL(dir, zk.WorldACL(zk.PermAll), -1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second instance to own a partition", 10*time.Second, func() bool {
		return distinctOwners(e.owners(t, "m", "t"))[second.tr.ID()] == 1
	})
	produceN(t, e, 0, 100)
	waitFor(t, "100 records", 20*time.Second, func() bool {
		seen := map[string]bool{}
		for _, p := range b.got() {
			seen[p.body] = true
		}
		return len(seen) == 100
	})
}

// TestEveryModuleRejoinsAfterOutage: three modules, pushes hanging while
// ZooKeeper is down long enough for the session to expire. Every module
// must claim its partitions again once ZooKeeper is back. (Before, the
// session watcher released the modules' partitions one by one, waiting for
// the hanging pushes, while the client's six-event buffer overflowed with
// connection attempts: the event saying the session was back could be
// lost, and the process stayed out of the fleet.)
func TestEveryModuleRejoinsAfterOutage(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 2}})
	z := zktest.Start(t)
	e := &env{kafka: k, zkAdr: z.Addr, kc: kafkaconf.Default()}
	var hang atomic.Bool
	hang.Store(true)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	b := newBackend(t, func(int, push, http.ResponseWriter) {
		for hang.Load() {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	var mods []ktransfer.Module
	for _, name := range []string{"m1", "m2", "m3"} {
		mods = append(mods, module(name, "t", b.URL))
	}
	r := e.startWith(t, 2000, mods...)
	held := func() int {
		n := 0
		for _, ms := range r.tr.Status() {
			n += len(ms.Partitions)
		}
		return n
	}
	waitFor(t, "6 partitions", 10*time.Second, func() bool { return held() == 6 })
	produceN(t, e, 0, 20)
	waitFor(t, "pushes hanging", 10*time.Second, func() bool { return len(b.got()) >= 6 })
	_, port, _ := strings.Cut(z.Addr, ":")
	p, _ := strconv.Atoi(port)
	dir := z.Dir
	z.Stop()
	waitFor(t, "partitions dropped", 10*time.Second, func() bool { return held() == 0 })
	time.Sleep(5 * time.Second) // connection attempts, one a second
	back, err := zkserver.Start(zkserver.Config{Dir: dir, Port: p, MaxSessionMs: zktest.MaxSessionMs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { back.Stop() })
	hang.Store(false)
	waitFor(t, "every module's partitions claimed again", 30*time.Second, func() bool { return held() == 6 })
}

// TestIdleWindowIsEmptyAfterRebalances: a second process joins and leaves
// ten times while records flow to a backend answering after 0-20 ms;
// afterwards the first process, idle, must hold no window slot. (Before,
// each release leaked the slots of records acknowledged above the
// frontier: 26 of 50 after ten rebalances, and a module whose window is
// full for good stops reading.)
func TestIdleWindowIsEmptyAfterRebalances(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 4})
	b := newBackend(t, func(n int, _ push, _ http.ResponseWriter) {
		time.Sleep(time.Duration(n*7919%21) * time.Millisecond)
	})
	m := module("m", "t", b.URL)
	m.WindowSize = 50
	first := e.start(t, m)
	produced := 0
	for range 10 {
		produceN(t, e, produced, produced+100)
		produced += 100
		second := e.start(t, m)
		time.Sleep(300 * time.Millisecond)
		produceN(t, e, produced, produced+100)
		produced += 100
		if err := second.stop(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every record delivered", 30*time.Second, func() bool {
		seen := map[string]bool{}
		for _, p := range b.got() {
			seen[p.body] = true
		}
		return len(seen) == produced
	})
	// A leaked slot stays for good: 15 s only spares a loaded host.
	waitFor(t, "the idle first process's window empty", 15*time.Second, func() bool {
		st := first.tr.Status()[0]
		for _, p := range st.Partitions {
			if p.InFlight > 0 {
				return false
			}
		}
		return st.WindowUsed == 0
	})
}
