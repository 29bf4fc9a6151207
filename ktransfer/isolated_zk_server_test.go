package ktransfer_test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zkserver"
)

// isolableEnsemble starts three ZooKeeper servers (tick tickMs) whose
// third one reaches the others, and they it, through proxies: freeze
// cuts it off from them (a network partition: nothing goes through, the
// connections stay open) while its clients still reach it.
func isolableEnsemble(t *testing.T, tickMs int) (servers []*zkserver.Server, freeze func()) {
	t.Helper()
	port := func() int {
		p, err := zkserver.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	proxy := func(p int) *tcpproxy.Proxy {
		x, err := tcpproxy.Start("127.0.0.1:" + strconv.Itoa(p))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { x.Thaw(); x.Close() })
		return x
	}
	var client, peer, elect [3]int
	for i := range 3 {
		client[i], peer[i], elect[i] = port(), port(), port()
	}
	direct := func(i int) string { return fmt.Sprintf("127.0.0.1:%d:%d", peer[i], elect[i]) }
	var proxies []*tcpproxy.Proxy
	via := func(i int) string {
		p, e := proxy(peer[i]), proxy(elect[i])
		proxies = append(proxies, p, e)
		return fmt.Sprintf("%s:%s", p.Addr(), portOf(e.Addr()))
	}
	views := [3][]string{
		{direct(0), direct(1), via(2)},
		{direct(0), direct(1), via(2)},
		{via(0), via(1), direct(2)},
	}
	dir := t.TempDir()
	servers = make([]*zkserver.Server, 3)
	errs := make(chan error, 3)
	start := func(i int) {
		s, err := zkserver.Start(zkserver.Config{Dir: filepath.Join(dir, "zk"+strconv.Itoa(i+1)), Port: client[i], TickMs: tickMs,
			ID: i + 1, Peers: views[i], StartFor: time.Minute})
		servers[i] = s
		errs <- err
	}
	t.Cleanup(func() {
		for _, s := range servers {
			if s != nil {
				s.Stop()
			}
		}
	})
	// The first two form the quorum and elect the leader among them; the
	// third joins them as a follower: cut off, it leaves them a leader
	// (a leader cut off would have them elect another, which its frozen
	// election connections can hold up).
	go start(0)
	go start(1)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("ensemble: %v", err)
		}
	}
	start(2)
	if err := <-errs; err != nil {
		t.Fatalf("ensemble: %v", err)
	}
	return servers, func() {
		for _, p := range proxies {
			p.Freeze()
		}
	}
}

// portOf is the port of a host:port address.
func portOf(addr string) string {
	_, p, _ := cutLast(addr, ':')
	return p
}

func cutLast(s string, sep byte) (string, string, bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// TestIsolatedZooKeeperServerStopsPushes: process A's session is on a
// ZooKeeper server that a network partition cuts off from the rest of
// the ensemble. The others expire A's session after its timeout and
// process B takes A's partition; the cut-off server goes on answering
// A's reads from its own copy until it notices it lost the leader
// (syncLimit ticks: 5 s here), and A's heartbeat, a plain read, kept
// A's partition "fresh": A and B pushed it at once for seconds. DESIGN:
// a process stops pushing within 2/3 of the session timeout of
// ZooKeeper's last answer, so that the next owner never overlaps it.
// The heartbeat now goes through the leader (sync): a cut-off server
// cannot answer it, and A stops in time.
func TestIsolatedZooKeeperServerStopsPushes(t *testing.T) {
	const tickMs, sessionMs = 1000, 2000 // syncLimit 5 ticks: the cut-off server notices after 5 s
	servers, freeze := isolableEnsemble(t, tickMs)
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	e := &env{kafka: k, zkAdr: servers[0].Addr + "," + servers[1].Addr, conn: envConn(t, servers[0].Addr), kc: kafkaconf.Default()}
	b := newBackend(t, nil)
	cfgA := e.config(t, sessionMs, module("m", "t", b.URL))
	cfgA.ZKHosts = []string{servers[2].Addr}
	a, err := ktransfer.New(cfgA, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, a.Run, 20*time.Second)
	waitFor(t, "A holding the partition", 20*time.Second, func() bool { return len(a.Status()[0].Partitions) == 1 })
	epochA := a.Status()[0].Partitions[0].Epoch
	rb := e.startWith(t, sessionMs, module("m", "t", b.URL))
	time.Sleep(time.Second) // B registered; A keeps the partition
	produceN(t, e, 0, 10)
	waitFor(t, "A pushing", 10*time.Second, func() bool { return len(b.got()) >= 10 })
	time.Sleep(time.Second) // A's commits done: nothing of its session waits at its server

	frozen := time.Now()
	freeze()
	// The partition idle (as a quiet topic is) until B holds it, then a
	// record every 20 ms for 3 s: whoever may push it does.
	waitFor(t, "B holding the partition", 20*time.Second, func() bool {
		st := rb.tr.Status()
		return len(st) == 1 && len(st[0].Partitions) == 1
	})
	claimedB := time.Now()
	for i := 10; time.Since(claimedB) < 3*time.Second; i++ {
		e.produce(t, "t", [][2]string{{"k", strconv.Itoa(i)}})
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	var lastA, firstB time.Time
	for _, p := range b.got() {
		switch {
		case p.epoch == epochA:
			lastA = p.at
		case p.epoch > epochA && firstB.IsZero():
			firstB = p.at
		}
	}
	t.Logf("partition cut at 0, B claimed it at %v; A's last push at %v, B's first at %v", claimedB.Sub(frozen).Round(time.Millisecond),
		lastA.Sub(frozen).Round(time.Millisecond), firstB.Sub(frozen).Round(time.Millisecond))
	if lastA.After(firstB) {
		t.Errorf("A pushed the partition until %v after the cut, B from %v: both at once for %v",
			lastA.Sub(frozen).Round(time.Millisecond), firstB.Sub(frozen).Round(time.Millisecond), lastA.Sub(firstB).Round(time.Millisecond))
	}
}
