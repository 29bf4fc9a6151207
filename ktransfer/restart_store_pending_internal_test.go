package ktransfer

import (
	"context"
	"log/slog"
	"path"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestRestartOffsetStoreRetriedNotOverwritten attacks the promise that
// the offset offset_out_of_range gives, below the log start, is stored at
// once and stays what a next owner reads, before the records dispatched
// before it are done: their commits store nothing. Here the restart's
// ZooKeeper write fails (the offset node made read-only; the client takes
// such an error for an unanswered write, which may have been applied),
// and before it is tried again:
//   - a commit: it settled the write (applied, its answer lost), then
//     wrote the records' frontier, below the log start, over it; a crash
//     then left the next owner an offset Kafka no longer has, and it
//     applied the policy again, later (under newest skipping every record
//     written in between);
//   - a hand-over, the claim's reading stopped before the retry: the
//     commit at the release wrote that frontier, or nothing, and the
//     offset stored before the restart stayed.
func TestRestartOffsetStoreRetriedNotOverwritten(t *testing.T) {
	t.Run("commit before the retry", func(t *testing.T) {
		r := newPendingRestart(t)
		r.readOnly(t, true)
		ctx, cancel := context.WithCancel(context.Background())
		var storeErr error
		stored := make(chan struct{})
		go func() {
			defer close(stored)
			storeErr = r.p.storeNewTopicStart(ctx, 20, false, 20, false)
		}()
		t.Cleanup(func() { cancel(); <-stored })
		// Between two tries of the store (its first write failed, the
		// next one not made yet), as the committer runs.
		deadline := time.Now().Add(10 * time.Second)
		for {
			r.m.commitMu.Lock()
			if r.p.unsure {
				break
			}
			r.m.commitMu.Unlock()
			if time.Now().After(deadline) {
				t.Fatal("timed out waiting for the restart's write to fail")
			}
			time.Sleep(time.Millisecond)
		}
		r.readOnly(t, false)
		// The write applied, its answer lost.
		if _, err := r.conn.Set(r.node, zklayout.EncodeOffset(20), r.p.offsetVersion); err != nil {
			r.m.commitMu.Unlock()
			t.Fatal(err)
		}
		// The last record before the restart done, and committed, as
		// commitAll does.
		r.ack(9)
		r.m.commitLocked([]*partition{r.p})
		// Read before the store is tried again: a crash here leaves this.
		data, _, gerr := r.conn.Get(r.node)
		r.m.commitMu.Unlock()
		if got := string(data); gerr != nil || got != "20" {
			t.Errorf("stored offset after a commit while the restart offset 20 was being stored: %s (%v), want 20", got, gerr)
		}
		<-stored
		if storeErr != nil {
			t.Fatalf("restart offset not stored: %v", storeErr)
		}
		if got := r.stored(t); got != "20" {
			t.Errorf("stored offset once the restart offset was stored: %s, want 20", got)
		}
	})
	t.Run("hand-over before the retry", func(t *testing.T) {
		r := newPendingRestart(t)
		r.readOnly(t, true)
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // released: the first try only
		if err := r.p.storeNewTopicStart(ctx, 20, false, 20, false); err == nil {
			t.Fatal("restart offset stored under a read-only offset node")
		}
		r.readOnly(t, false)
		r.ack(9)
		r.m.release(r.c, handOver)
		if got := r.stored(t); got != "20" {
			t.Errorf("stored offset after the hand-over: %s, want 20, the restart offset", got)
		}
	})
}

// pendingRestart is partition 0 of module m (topic t), claimed by
// process A, its records 0 to 9 dispatched and 0 to 8 committed (offset
// 9 stored), record 9 still in flight, as when the partition reads on
// after an offset Kafka no longer has (the log starting at 20).
type pendingRestart struct {
	m    *module
	p    *partition
	c    *claimed
	conn *zk.Conn // the test's own session
	node string   // the partition's offset node
}

func newPendingRestart(t *testing.T) *pendingRestart {
	t.Helper()
	z := zktest.Start(t)
	conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)
	acl := zk.WorldACL(zk.PermAll)
	const chroot = "/mq/c"
	tr := &Transfer{cfg: Config{ZKChroot: chroot, ShutdownTimeoutMs: 3000}, zk: zktest.ConnectSession(t, z.Addr, 10*time.Second),
		acl: acl, id: "A", zkUp: true, log: slog.New(slog.DiscardHandler)}
	cfg := DefaultModule()
	cfg.Name, cfg.Topic, cfg.WorkerNum, cfg.WindowSize = "m", "t", 1, 100
	m := testModule(t, tr, cfg)
	owners := zklayout.Owners(chroot, "m", "t")
	if err := zklayout.CreateAll(conn, owners, acl); err != nil {
		t.Fatal(err)
	}
	owner := path.Join(owners, "0")
	if _, err := conn.Create(owner, []byte("A"), 0, acl); err != nil {
		t.Fatal(err)
	}
	_, stat, err := conn.Get(owner)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := newPartition(m, 0, ctx)
	p.owner, p.epoch, p.offsetVersion, p.tracker, p.session = owner, stat.Czxid, -1, newTracker(0), m.t.conn().SessionID()
	m.parts[0] = p
	done := make(chan struct{})
	close(done) // the read loop returned
	c := &claimed{part: p, cancel: cancel, done: done}
	m.claims[0] = c
	r := &pendingRestart{m: m, p: p, c: c, conn: conn, node: path.Join(zklayout.Offsets(chroot, "m", "t"), "0")}
	for o := range int64(10) {
		m.slots <- struct{}{}
		p.tracker.dispatch(o)
	}
	for o := range int64(9) {
		r.ack(o)
	}
	if err := m.commitOne(p); err != nil {
		t.Fatal(err)
	}
	if got := r.stored(t); got != "9" {
		t.Fatalf("stored offset %s, want 9", got)
	}
	return r
}

// ack acknowledges the partition's record at offset o.
func (r *pendingRestart) ack(o int64) {
	r.m.ack(&record{msg: &kgo.Record{Offset: o}, part: r.p})
}

// readOnly makes the offset node refuse writes, or accept them again.
func (r *pendingRestart) readOnly(t *testing.T, on bool) {
	t.Helper()
	acl := zk.WorldACL(zk.PermAll)
	if on {
		acl = zk.WorldACL(zk.PermRead | zk.PermAdmin) // admin: the test gives write back
	}
	if _, err := r.conn.SetACL(r.node, acl, -1); err != nil {
		t.Fatal(err)
	}
}

// stored is the partition's offset in ZooKeeper.
func (r *pendingRestart) stored(t *testing.T) string {
	t.Helper()
	data, _, err := r.conn.Get(r.node)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
