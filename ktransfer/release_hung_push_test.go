package ktransfer_test

import (
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// twoAtOnce tells when two pushes are in flight at once (both closed).
type twoAtOnce struct {
	mu       sync.Mutex
	inFlight int
	both     chan struct{}
}

func newTwoAtOnce() *twoAtOnce { return &twoAtOnce{both: make(chan struct{})} }

// hold counts a push in flight until a second one is, or for 3 s.
func (a *twoAtOnce) hold() {
	a.mu.Lock()
	if a.inFlight++; a.inFlight == 2 {
		close(a.both)
	}
	a.mu.Unlock()
	select { // each waits for the other, or answers alone after a while
	case <-a.both:
	case <-time.After(3 * time.Second):
	}
	a.mu.Lock()
	a.inFlight--
	a.mu.Unlock()
}

// TestReleaseFreesWorkerOfHungPush: a process with worker_num 2 holds two
// partitions; its backend takes a push of partition 1 and never answers
// (read_timeout_ms 0: no limit). A second process joins and partition 1
// moves to it: the release abandons the hung push at shutdown_timeout_ms.
// The abandoned push must end (its connection closed) and give its worker
// back: two records of partition 0 with different keys are then pushed by
// both workers at once. Before, the worker stayed in the hung push for
// ever, and the process pushed its remaining partition with one worker.
func TestReleaseFreesWorkerOfHungPush(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	hang := make(chan struct{})
	at := newTwoAtOnce() // two pushes of partition 0 in flight at once
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if !strings.HasPrefix(p.path, "/a/") {
			return
		}
		if p.partition == "1" {
			<-hang
			return
		}
		at.hold()
	})
	t.Cleanup(func() { close(hang) }) // before the backend's Close, which waits for its handlers
	first := module("m", "t", b.URL)
	first.Protocol.URI = "/a/{#TOPIC}?key={#KEY}"
	first.WorkerNum = 2
	cfg := e.config(t, 0, first)
	cfg.ShutdownTimeoutMs = 300
	tr, err := ktransfer.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "the first process holding both partitions", 10*time.Second, func() bool { return len(tr.Status()[0].Partitions) == 2 })
	writeKeys(t, e, 1, []string{"h"})
	waitFor(t, "the push of partition 1 hanging", 10*time.Second, func() bool {
		for _, p := range b.got() {
			if strings.HasPrefix(p.path, "/a/") && p.partition == "1" {
				return true
			}
		}
		return false
	})
	second := module("m", "t", b.URL)
	second.Protocol.URI = "/b/{#TOPIC}?key={#KEY}"
	e.start(t, second)
	waitFor(t, "partition 1 pushed by the second process", 20*time.Second, func() bool {
		for _, p := range b.got() {
			if strings.HasPrefix(p.path, "/b/") && p.partition == "1" {
				return true
			}
		}
		return false
	})
	if parts := tr.Status()[0].Partitions; len(parts) != 1 {
		t.Fatalf("first process holds %+v after the hand-over, want partition 0 alone", parts)
	}
	writeKeys(t, e, 0, []string{"x", "y"})
	select {
	case <-at.both:
	case <-time.After(8 * time.Second):
		t.Fatal("partition 0's two keys were never pushed at once with worker_num 2: a worker is still held by the released partition's hung push")
	}
}

// TestSessionLossFreesWorkerOfHungPush: as TestReleaseFreesWorkerOfHungPush,
// but the partitions are dropped because ZooKeeper stops answering (frozen
// past 2/3 of the session timeout): a drop commits nothing, so a push in
// progress is of no use any more. Its connection must be closed and its
// worker given back: once the partitions are claimed again, two keys of
// partition 0 are pushed at once with worker_num 2. Before, the hung push
// held its worker for ever.
func TestSessionLossFreesWorkerOfHungPush(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 2}})
	z := zktest.Start(t)
	e := &env{kafka: k, zkAdr: z.Addr, conn: envConn(t, z.Addr), kc: kafkaconf.Default()}
	hang := make(chan struct{})
	at := newTwoAtOnce()
	var mu sync.Mutex
	p1 := 0
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if p.partition == "1" {
			mu.Lock()
			p1++
			first := p1 == 1
			mu.Unlock()
			if first {
				<-hang
			}
			return
		}
		at.hold()
	})
	t.Cleanup(func() { close(hang) })
	m := module("m", "t", b.URL)
	m.WorkerNum = 2
	r := e.startWith(t, 4500, m)
	waitFor(t, "both partitions", 10*time.Second, func() bool { return len(r.tr.Status()[0].Partitions) == 2 })
	writeKeys(t, e, 1, []string{"h"})
	waitFor(t, "the push of partition 1 hanging", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return p1 == 1
	})
	if err := syscall.Kill(z.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(z.Pid(), syscall.SIGCONT) })
	waitFor(t, "the partitions dropped with ZooKeeper frozen", 10*time.Second, func() bool { return len(r.tr.Status()[0].Partitions) == 0 })
	if err := syscall.Kill(z.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both partitions claimed again", 20*time.Second, func() bool { return len(r.tr.Status()[0].Partitions) == 2 })
	writeKeys(t, e, 0, []string{"x", "y"})
	select {
	case <-at.both:
	case <-time.After(5 * time.Second):
		t.Fatal("partition 0's two keys were never pushed at once with worker_num 2: a worker is still held by the push hung when the partitions were dropped")
	}
}
