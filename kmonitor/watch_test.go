package kmonitor_test

import (
	"bufio"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// An offset znode deleted and created again at once (an operator resetting
// an offset with zkCli delete + create, a tool rewriting it) is still
// followed afterwards: the watcher that saw it deleted must not leave a
// stale entry behind that keeps a new one from starting.
func TestOffsetZnodeDeletedAndCreatedAgainIsFollowed(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 1000)
	setOffset(t, e.conn, "m", "a", "0", "0")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":1000}}}`+"\n", 10*time.Second)
	p := chroot + "/consumers/m/offsets/a/0"
	for i := 1; i <= 100; i++ {
		if err := e.conn.Delete(p, -1); err != nil {
			t.Fatal(err)
		}
		if _, err := e.conn.Create(p, []byte(strconv.Itoa(i)), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`{"test_cluster":{"m":{"0":%d}}}`+"\n", 1000-i)
		e.eventually(t, "", want, 10*time.Second)
	}
}

// watchCount asks the ZooKeeper server (mntr) how many watches it holds.
func watchCount(t *testing.T, addr string) int { return mntr(t, addr, "zk_watch_count") }

// mntr is the value of one of the ZooKeeper server's mntr lines.
func mntr(t *testing.T, addr, name string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("mntr")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			n, _ := strconv.Atoi(f[1])
			return n
		}
		if err != nil {
			t.Fatalf("no %s in the answer to mntr: %v", name, err)
		}
	}
}

// waitFor polls cond every 20 ms until it holds or limit passes, and
// reports whether it held.
func waitFor(limit time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(limit); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// Consumer groups of other tools share <chroot>/consumers and come and go,
// many before committing any offset (no offsets/ node yet). Once they are
// all gone, kmonitor holds no more ZooKeeper watches and goroutines than
// before: a watch left for each would grow the server's memory for as
// long as kmonitor's session lasts.
func TestNoWatchLeftByModulesThatCameAndWent(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 3)
	setOffset(t, e.conn, "m", "a", "0", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":2}}}`+"\n", 10*time.Second)
	w0 := watchCount(t, e.zk.Addr)
	g0 := runtime.NumGoroutine()
	const n = 100
	for round := range 2 {
		for i := range n {
			g := fmt.Sprintf("%s/consumers/console-consumer-%d-%d/ids", chroot, round, i)
			if err := zklayout.CreateAll(e.conn, g, zk.WorldACL(zk.PermAll)); err != nil {
				t.Fatal(err)
			}
		}
		// kmonitor waits for each module's offsets/ with a watch of its own.
		if !waitFor(10*time.Second, func() bool { return watchCount(t, e.zk.Addr) >= w0+n }) {
			t.Fatalf("round %d: %d watches, want at least %d while the modules are there", round, watchCount(t, e.zk.Addr), w0+n)
		}
		for i := range n {
			deleteAll(t, e.conn, fmt.Sprintf("%s/consumers/console-consumer-%d-%d", chroot, round, i))
		}
		if !waitFor(10*time.Second, func() bool { return watchCount(t, e.zk.Addr) <= w0 }) {
			t.Fatalf("round %d: ZooKeeper holds %d watches once the %d modules are gone, %d before", round, watchCount(t, e.zk.Addr), n, w0)
		}
	}
	if !waitFor(10*time.Second, func() bool { return runtime.NumGoroutine() <= g0+5 }) {
		t.Errorf("%d goroutines after the modules came and went, %d before", runtime.NumGoroutine(), g0)
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"0":2}}}`+"\n", 5*time.Second)
}
