package ktransfer

import (
	"context"
	"log/slog"
	"path"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// committing is a module of 100 workers and window 1000 (dueAt 450) whose
// ZooKeeper session goes through a proxy the test can freeze, holding
// partitions 0 and 1 from offset 0, with its committer running and a
// periodic commit every 30 s. Partition 0 has 600 records dispatched,
// partition 1 one (retried for a long time: never acknowledged here, so
// "nothing else in flight" does not hold).
type committing struct {
	m      *module
	p0     *partition
	px     *tcpproxy.Proxy
	conn   *zk.Conn // the test's own session, not through the proxy
	offset string   // partition 0's offset node
}

func newCommitting(t *testing.T) *committing {
	t.Helper()
	z := zktest.Start(t)
	px, err := tcpproxy.Start(z.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)
	acl := zk.WorldACL(zk.PermAll)
	const chroot = "/mq/c"
	tr := &Transfer{cfg: Config{ZKChroot: chroot}, zk: zktest.ConnectSession(t, px.Addr(), 10*time.Second), acl: acl, id: "A", zkUp: true,
		log: slog.New(slog.DiscardHandler)}
	cfg := DefaultModule()
	cfg.Name, cfg.Topic, cfg.WorkerNum, cfg.WindowSize, cfg.ZKOffsetUpdateIntervalS = "m", "t", 100, 1000, 30
	m := testModule(t, tr, cfg)
	owners := zklayout.Owners(chroot, "m", "t")
	if err := zklayout.CreateAll(conn, owners, acl); err != nil {
		t.Fatal(err)
	}
	var ps [2]*partition
	for i := range ps {
		owner := path.Join(owners, strconv.Itoa(i))
		if _, err := conn.Create(owner, []byte("A"), 0, acl); err != nil {
			t.Fatal(err)
		}
		ps[i] = &partition{m: m, id: int32(i), owner: owner, offsetVersion: -1, tracker: newTracker(0), session: tr.conn().SessionID()}
		m.parts[int32(i)] = ps[i]
	}
	for o := range int64(600) {
		m.slots <- struct{}{}
		ps[0].tracker.dispatch(o)
	}
	m.slots <- struct{}{}
	ps[1].tracker.dispatch(0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.commitLoop(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return &committing{m: m, p0: ps[0], px: px, conn: conn, offset: path.Join(zklayout.Offsets(chroot, "m", "t"), "0")}
}

// ack acknowledges partition 0's offsets [from, to).
func (c *committing) ack(from, to int64) {
	for o := from; o < to; o++ {
		c.m.ack(&record{msg: &kgo.Record{Offset: o}, part: c.p0})
	}
}

// stored is partition 0's offset in ZooKeeper.
func (c *committing) stored() string {
	data, _, err := c.conn.Get(c.offset)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(data)
}

// commits is how many ZooKeeper offset writes the module tried.
func (c *committing) commits() uint64 {
	var h dto.Metric
	_ = c.m.stats.commitH.(prometheus.Metric).Write(&h)
	return h.GetHistogram().GetSampleCount()
}

// pollUntil polls cond until it holds, failing after limit.
func pollUntil(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAckedDuringCommitNotLeftToPeriodic: records acknowledged while a
// commit is written, within commitAfter of the committer's wake-up, then
// traffic stops. ack counts none of them toward dueAt (the commit in flight
// covers the others) and wakes nobody; nothing re-checked when the write
// ended, and they waited for the periodic commit (30 s here). They must be
// stored about commitAfter after the write ends.
func TestAckedDuringCommitNotLeftToPeriodic(t *testing.T) {
	c := newCommitting(t)
	c.px.Freeze() // the write stays in flight
	c.m.lastKick.Store(monoNow())
	c.ack(0, 450) // dueAt: a commit of 0-449
	pollUntil(t, "the commit of 450 records in flight", 5*time.Second, func() bool { return c.m.committing.Load() == 450 })
	// Only the count may wake the committer during these acknowledgements:
	// with lastKick now, a deschedule of commitAfter (20 ms) before them
	// lets ack wake it by time, rightly, and the check below would fail.
	c.m.lastKick.Store(monoNow() + int64(time.Hour))
	c.ack(450, 500)
	select {
	case <-c.m.commitKick:
		t.Fatal("50 records acknowledged during a commit of 450 queued another commit")
	default:
	}
	// The acknowledgements came within commitAfter of the wake-up, and
	// nobody was woken: when the write ends, only the committer's own
	// re-check (commitAfter from lastKick) stores them before the
	// periodic commit, 30 s away, past the 10 s waited for below.
	c.m.lastKick.Store(monoNow())
	c.px.Thaw()
	ended := time.Now()
	pollUntil(t, "offset 500 stored (offsets 450-499 acknowledged during the commit of 0-449)", 10*time.Second,
		func() bool { return c.stored() == "500" && c.m.uncommitted.Load() == 0 })
	t.Logf("offset 500 stored %v after the commit of 0-449 was let through", time.Since(ended).Round(time.Millisecond))
}

// TestFailingCommitsNotRetriedEveryCommitAfter: the committer's timer
// commits what ack left waiting, but a commit that stores nothing does not
// arm it again: while ZooKeeper refuses every write, the records wait for
// the periodic commit instead of a retry every commitAfter.
func TestFailingCommitsNotRetriedEveryCommitAfter(t *testing.T) {
	c := newCommitting(t)
	c.m.lastKick.Store(monoNow()) // the 450 acknowledgements make one commit due
	c.ack(0, 450)
	pollUntil(t, "offset 450 stored", 5*time.Second, func() bool { return c.stored() == "450" })
	// Every write fails from here (reads still answer, so a write without
	// an answer is settled and tried again).
	if _, err := c.conn.SetACL(c.offset, zk.WorldACL(zk.PermRead), -1); err != nil {
		t.Fatal(err)
	}
	before := c.commits()
	c.ack(450, 500)
	// The first commit of 450-499 is tried soon (awaited: a loaded host
	// may take long); then 25 x commitAfter: a timer armed again after
	// each failure would retry about 25 times.
	pollUntil(t, "a commit tried after 50 records acknowledged", 10*time.Second, func() bool { return c.commits() > before })
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if tried := c.commits() - before; tried > 3 {
			t.Fatalf("%d commits tried within 500 ms while ZooKeeper refused every write: retried every commitAfter", tried)
		}
	}
	if got := c.stored(); got != "450" {
		t.Errorf("offset %s stored under a read-only ACL", got)
	}
}
