package ktransfer

import (
	"context"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// childWatches counts the channels conn holds for child watches of dir:
// each is kept, and delivered to, until the next change of dir. Read
// under the client's own lock (its fields are unexported: reflection).
func childWatches(conn *zk.Conn, dir string) int {
	v := reflect.ValueOf(conn).Elem()
	mu := (*sync.Mutex)(unsafe.Pointer(v.FieldByName("watchersLock").UnsafeAddr()))
	mu.Lock()
	defer mu.Unlock()
	n := 0
	iter := v.FieldByName("watchers").MapRange()
	for iter.Next() {
		if iter.Key().Field(0).String() == dir {
			n += iter.Value().Len()
		}
	}
	return n
}

// TestStoppedWatchLeavesNoChannel: a module run (started and stopped by
// each reload that changes the module) watches ids/ and owners/. On a
// process that holds none of the module's partitions (an N+1 spare),
// owners/ does not change between reloads; before, each run's watch left
// its channel in the ZooKeeper client until owners/ next changed: one
// more per reload.
func TestStoppedWatchLeavesNoChannel(t *testing.T) {
	z := zktest.Start(t)
	conn := zktest.ConnectSession(t, z.Addr, 10*time.Second)
	tr := &Transfer{cfg: Config{ZKChroot: "/mq/c"}, zk: conn, acl: zk.WorldACL(zk.PermAll), zkUp: true, id: "spare"}
	const dir = "/mq/c/consumers/m/owners/t"
	for range 5 {
		m := &module{t: tr, cfg: Module{Name: "m", Topic: "t"}, log: slog.New(slog.DiscardHandler), changed: make(chan struct{}, 1)}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); m.watchDir(ctx, dir) }()
		select {
		case <-m.changed: // armed: the coordinator is woken after each arm
		case <-time.After(10 * time.Second):
			t.Fatal("the watch was not armed within 10 s")
		}
		cancel()
		<-done
	}
	if n := childWatches(conn, dir); n > 1 {
		t.Errorf("%d child watch channels of %s in the client after 5 module runs; want at most 1", n, dir)
	}
}
