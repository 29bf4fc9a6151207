package ktransfer_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestOwnerDeletedDuringItsHandOverAbandonsThePush: A hands partition 1
// over to B while a push of its record hangs at the backend (the
// hand-over waits for it, up to shutdown_timeout_ms, 10 s here), and the
// owner node of partition 1 itself is deleted meanwhile (an operator, a
// script). B claims it at once and pushes the same key. A's push must be
// abandoned then (its connection closed), as a deposed claim's are. Before,
// the claim being handed over was watched by nobody: A's request stayed
// open beside B's for the rest of the 10 s.
func TestOwnerDeletedDuringItsHandOverAbandonsThePush(t *testing.T) {
	e, b, tr, _, closedAt := hungPushOfPartition1(t)
	startB(t, e, b)
	waitFor(t, "A handing partition 1 over", 10*time.Second, func() bool { return ktransfer.Releasing(tr) > 0 })
	deleteOwnerWhileHandingOver(t, e, b, closedAt)
}

// TestOwnerDeletedDuringAStopsHandOverAbandonsThePush: the same at A's
// stop, whose hand-overs wait for the pushes in progress too: owners/ was
// watched, and the claims guarded, only until the stop began, before its
// hand-overs.
func TestOwnerDeletedDuringAStopsHandOverAbandonsThePush(t *testing.T) {
	e, b, tr, stop, closedAt := hungPushOfPartition1(t)
	startB(t, e, b)
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	waitFor(t, "A handing partition 1 over at its stop", 10*time.Second, func() bool { return ktransfer.Releasing(tr) > 0 })
	deleteOwnerWhileHandingOver(t, e, b, closedAt)
	if err := <-stopped; err != nil {
		t.Errorf("A's stop: %v", err)
	}
}

// hungPushOfPartition1 starts process A (pushes to /a/, shutdown_timeout_ms
// 10 s) alone on a topic of 2 partitions, and returns once A's push of a
// record of partition 1 hangs at the backend; closedAt is set when that
// push's connection closes. Every other push is answered 500 (retried).
func hungPushOfPartition1(t *testing.T) (*env, *backend, *ktransfer.Transfer, func() error, *atomic.Int64) {
	t.Helper()
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	hang := make(chan struct{})
	closedAt := new(atomic.Int64)
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if strings.HasPrefix(p.path, "/a/") && p.partition == "1" {
			select {
			case <-hang:
			case <-w.(http.CloseNotifier).CloseNotify(): //nolint:staticcheck // the handler has no request here
				closedAt.CompareAndSwap(0, time.Now().UnixNano())
			}
			return
		}
		w.WriteHeader(500) // B's pushes: retried
	})
	t.Cleanup(func() { close(hang) })
	first := module("m", "t", b.URL)
	first.Protocol.URI = "/a/{#TOPIC}?key={#KEY}"
	first.WorkerNum = 4
	cfg := e.config(t, 0, first)
	cfg.ShutdownTimeoutMs = 10000
	tr, err := ktransfer.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	stop := runtest.Start(t, tr.Run, 30*time.Second)
	waitFor(t, "A holds both", 10*time.Second, func() bool { return len(tr.Status()[0].Partitions) == 2 })
	writeKeys(t, e, 1, []string{"h"})
	waitFor(t, "A's push of partition 1 hanging", 10*time.Second, func() bool {
		for _, p := range b.got() {
			if strings.HasPrefix(p.path, "/a/") && p.partition == "1" {
				return true
			}
		}
		return false
	})
	return e, b, tr, stop, closedAt
}

// startB starts process B, pushing to /b/.
func startB(t *testing.T, e *env, b *backend) {
	t.Helper()
	second := module("m", "t", b.URL)
	second.Protocol.URI = "/b/{#TOPIC}?key={#KEY}"
	e.start(t, second)
}

// deleteOwnerWhileHandingOver deletes the owner node of partition 1, which
// A is handing over while its push hangs (closedAt is set when the push's
// connection closes), waits for B's first push of it, and checks that A's
// push was abandoned within 2 s of it.
func deleteOwnerWhileHandingOver(t *testing.T, e *env, b *backend, closedAt *atomic.Int64) {
	t.Helper()
	if closedAt.Load() != 0 {
		t.Fatal("A's push ended before the owner node was deleted: the hand-over did not wait for it")
	}
	if err := e.conn.Delete(zklayout.Owners(chroot, "m", "t")+"/1", -1); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	var bFirst time.Time
	waitFor(t, "B pushing partition 1", 10*time.Second, func() bool {
		for _, p := range b.got() {
			if strings.HasPrefix(p.path, "/b/") && p.partition == "1" {
				bFirst = p.at
				return true
			}
		}
		return false
	})
	waitFor(t, "A's push abandoned", 9*time.Second, func() bool { return closedAt.Load() != 0 })
	if closed := time.Unix(0, closedAt.Load()); closed.Sub(bFirst) > 2*time.Second {
		t.Errorf("A's push of partition 1 stayed open %v after B's first push of it (owner node deleted %v before that)",
			closed.Sub(bFirst).Round(time.Millisecond), bFirst.Sub(deleted).Round(time.Millisecond))
	}
}

// TestOwnerDeletedWhileOwnersIsUnwatchedAbandonsTheHandOversPush: the same
// as TestOwnerDeletedDuringItsHandOverAbandonsThePush, but the owner node
// is deleted while A has no watch on owners/: a change of the folder (a
// node that is no partition's) fired it, and its arm again fails (the
// ZooKeeper connection down at that moment: tried again a second later).
// Once the watch is set again, A must look at its claims: its
// reassignment is the one waiting for the hand-over's push. Before, the
// new arm only woke that reassignment, the push stayed open beside B's
// for the rest of shutdown_timeout_ms (10 s).
func TestOwnerDeletedWhileOwnersIsUnwatchedAbandonsTheHandOversPush(t *testing.T) {
	e, b, tr, _, closedAt := hungPushOfPartition1(t)
	startB(t, e, b)
	waitFor(t, "A handing partition 1 over", 10*time.Second, func() bool { return ktransfer.Releasing(tr) > 0 })
	owners := zklayout.Owners(chroot, "m", "t")
	tries, release := ktransfer.DisturbWatch(t, tr, true, owners)
	if _, err := e.conn.Create(owners+"/x", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A's arm of the owners/ watch failing", 5*time.Second, func() bool { return tries(owners) > 0 })
	time.AfterFunc(300*time.Millisecond, release) // the next arm, a second after the failed one, is set
	deleteOwnerWhileHandingOver(t, e, b, closedAt)
}
