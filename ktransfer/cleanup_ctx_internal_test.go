package ktransfer

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// registeringCtx counts the contexts derived from it that are still
// registered with it: the context package registers a child through
// AfterFunc (of a parent that has one and is not its own cancelCtx, which
// Value hides), and unregisters it when the child is cancelled.
type registeringCtx struct {
	context.Context
	live atomic.Int64
}

func (c *registeringCtx) Value(any) any { return nil }

func (c *registeringCtx) AfterFunc(f func()) func() bool {
	c.live.Add(1)
	stop := context.AfterFunc(c.Context, f)
	var once atomic.Bool
	return func() bool {
		if once.CompareAndSwap(false, true) {
			c.live.Add(-1)
		}
		return stop()
	}
}

// TestFinishedCleanupReleasesItsContext: each reload that removes a module
// (or moves it to another topic) starts a cleanup of its ZooKeeper nodes
// with a context derived from the runner's reading context. One that
// succeeded must give its context back; before, it stayed registered with
// the reading context until the process stopped: one more per such reload.
func TestFinishedCleanupReleasesItsContext(t *testing.T) {
	z := zktest.Start(t)
	conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)
	tr := &Transfer{cfg: Config{ZKChroot: "/mq/c"}, zk: conn, acl: zk.WorldACL(zk.PermAll), zkUp: true}
	m := &module{t: tr, cfg: Module{Name: "m", Topic: "t"}, log: slog.New(slog.DiscardHandler)}
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	read := &registeringCtx{Context: base}
	r := &runner{readCtx: read}
	for range 5 {
		tr.reloadMu.Lock()
		tr.startCleanup(r, m, false) // no owners/ to delete: done at once
		tr.reloadMu.Unlock()
		r.wg.Wait()
	}
	if n := read.live.Load(); n != 0 {
		t.Errorf("%d contexts of finished cleanups still registered with the reading context after 5 cleanups", n)
	}
}
