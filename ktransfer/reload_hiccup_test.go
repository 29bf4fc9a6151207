package ktransfer_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// hiccupFleet is two processes sharing module r (topic tr, 4 partitions):
// a, which also runs module u (topic tu, 2 partitions) and reaches
// ZooKeeper through px, and b.
type hiccupFleet struct {
	e    *env
	px   *tcpproxy.Proxy
	ca   confDir
	a, b *running
	br   *backend
}

// zkSlow is a's ktransfer.yaml tail: a session timeout long enough for a
// freeze past the grace (6 s) to keep the session.
const zkSlow = "zk_timeout_ms: 9000\n"

func newHiccupFleet(t *testing.T) *hiccupFleet {
	t.Helper()
	return newHiccupFleetWith(t, zkSlow)
}

// newHiccupFleetWith is newHiccupFleet with a's zk_timeout_ms line: a test
// that must act between a giving its session up (2/3 of it) and the
// session's expiry (which deletes a's registration) gets a third of it.
func newHiccupFleetWith(t *testing.T, zkTimeout string) *hiccupFleet {
	t.Helper()
	e := newEnv(t, kafkatest.Topic{Name: "tu", Partitions: 2}, kafkatest.Topic{Name: "tr", Partitions: 4})
	bu, br := newBackend(t, nil), newBackend(t, nil)
	px, err := tcpproxy.Start(e.zkAdr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	ca := e.reloadConf(t)
	ca.zk = px.Addr()
	ca.enable(t, zkTimeout, "u", "r")
	ca.module(t, "u", "tu", "u", bu.URL, "")
	ca.module(t, "r", "tr", "r", br.URL, "")
	cb := e.reloadConf(t, "r")
	cb.module(t, "r", "tr", "r", br.URL, "")
	f := &hiccupFleet{e: e, px: px, ca: ca, br: br, a: startConf(t, ca, nil), b: startConf(t, cb, nil)}
	waitFor(t, "r shared 2+2", 20*time.Second, func() bool {
		return halves(e.owners(t, "r", "tr"), 4)
	})
	// Owner nodes come before a partition runs: giveUpA's "a holds
	// nothing" must not be met by partitions still starting, which a
	// frozen ZooKeeper holds back without a's session being given up.
	waitFor(t, "a runs tu's 2 partitions and 2 of tr", 20*time.Second, func() bool { return f.held() == 4 })
	return f
}

// held is how many partitions a holds, every module together.
func (f *hiccupFleet) held() int {
	n := 0
	for _, ms := range f.a.tr.Status() {
		n += len(ms.Partitions)
	}
	return n
}

// giveUpA freezes a's ZooKeeper connection until a gave its session up.
func (f *hiccupFleet) giveUpA(t *testing.T) {
	t.Helper()
	f.px.Freeze()
	// a gives its session up two thirds of it after ZooKeeper went
	// silent: with a 30 s session (TestRewrittenRegistrationWakesTheGroup)
	// a bound of 20 s met that moment exactly, and a loaded machine
	// missed it.
	limit := max(20*time.Second, ktransfer.SessionTimeout(f.a.tr)*2/3+10*time.Second)
	waitFor(t, "a gives its session up", limit, func() bool { return f.held() == 0 })
}

// bHoldsR waits until b holds all of r's partitions and a is no member of
// r, then checks records produced to tr reach the backend.
func (f *hiccupFleet) bHoldsR(t *testing.T) {
	t.Helper()
	idsDir := zklayout.ConsumerIDs(chroot, "r")
	waitFor(t, "b holds r's 4 partitions, a deregistered from r", 20*time.Second, func() bool {
		ids, _, err := f.e.conn.Children(idsDir)
		return err == nil && slices.Equal(ids, []string{f.b.tr.ID()}) && distinctOwners(f.e.owners(t, "r", "tr"))[f.b.tr.ID()] == 4
	})
	f.delivered(t, 100)
}

// delivered produces n records to tr and waits for all of them.
func (f *hiccupFleet) delivered(t *testing.T, n int) {
	t.Helper()
	before := distinct(f.br)
	var recs [][2]string
	for i := range n {
		recs = append(recs, [2]string{"k" + strconv.Itoa(i), "after-" + strconv.Itoa(i)})
	}
	f.e.produce(t, "tr", recs)
	waitFor(t, "the records produced after the reload delivered", 20*time.Second, func() bool { return distinct(f.br)-before == n })
}

// TestReloadRemovedModuleCleanedAfterSessionGivenUp: a reload removes
// module r while a's session is given up (ZooKeeper silent for the grace,
// the session not expired): r's run can neither deregister nor delete its
// owner nodes. /status says the cleanup is pending; once a takes its
// session back, a's registration and owner nodes of r are deleted and b
// pushes all of r. Before, they stayed for the rest of a's session: b
// counted a as a member of r and nobody pushed a's share.
func TestReloadRemovedModuleCleanedAfterSessionGivenUp(t *testing.T) {
	f := newHiccupFleet(t)
	f.giveUpA(t)
	f.ca.enable(t, zkSlow, "u") // r removed
	if err := f.a.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := f.a.tr.ConfigStatus().CleanupPending; !slices.Equal(got, []string{"r"}) {
		t.Errorf("cleanup_pending %v while the session is given up, want [r]", got)
	}
	f.px.Thaw()
	waitFor(t, "a back (u claimed again)", 20*time.Second, func() bool { return f.held() == 2 })
	f.bHoldsR(t)
	waitFor(t, "cleanup_pending empty", 10*time.Second, func() bool { return len(f.a.tr.ConfigStatus().CleanupPending) == 0 })
}

// TestReloadRemovedModuleCleanedAfterConnectionCut: the ZooKeeper
// connection breaks (the session survives) while a reload removes module
// r: its deregister and owner node deletes fail. The cleanup retries them
// on the new connection. Before, nothing retried them.
func TestReloadRemovedModuleCleanedAfterConnectionCut(t *testing.T) {
	f := newHiccupFleet(t)
	f.ca.enable(t, zkSlow, "u") // r removed
	// Quiet for a while (the ZooKeeper client idle but for its pings):
	// the reload's requests are then the first to meet the broken link.
	time.Sleep(3 * time.Second)
	f.px.Freeze()
	done := make(chan error, 1)
	go func() { done <- f.a.tr.Reload(context.Background()) }()
	time.Sleep(500 * time.Millisecond) // the deregister is sent and held by the proxy
	f.px.Cut()
	f.px.Thaw()
	if err := <-done; err != nil {
		t.Fatalf("reload: %v", err)
	}
	f.bHoldsR(t)
	waitFor(t, "cleanup_pending empty", 10*time.Second, func() bool { return len(f.a.tr.ConfigStatus().CleanupPending) == 0 })
}

// TestReloadChangedModuleHealsAfterSessionGivenUp: a reload changes module
// r while a's session is given up; once a is back, its new run of r
// shares r with b again and every record is pushed.
func TestReloadChangedModuleHealsAfterSessionGivenUp(t *testing.T) {
	f := newHiccupFleet(t)
	f.giveUpA(t)
	f.ca.module(t, "r", "tr", "r2", f.br.URL, "") // r changed
	if err := f.a.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	f.px.Thaw()
	waitFor(t, "r shared 2+2 again", 30*time.Second, func() bool {
		o := distinctOwners(f.e.owners(t, "r", "tr"))
		return o[f.a.tr.ID()] == 2 && o[f.b.tr.ID()] == 2
	})
	f.delivered(t, 100)
	if got := f.a.tr.ConfigStatus().CleanupPending; len(got) != 0 {
		t.Errorf("cleanup_pending %v for a module changed on the same topic", got)
	}
}

// TestReloadRenamedToMissingTopicLeavesAfterSessionGivenUp: a reload
// changes module r's topic to one not created yet while a's session is
// given up: r's old run cannot deregister, and its registration names the
// old topic. The new run waits for its topic and never registered, so the
// registration stayed once a took its session back: b counted a as a
// member of r and left a's share of tr unpushed until the new topic was
// created. The waiting run deletes it, and b pushes all of tr.
func TestReloadRenamedToMissingTopicLeavesAfterSessionGivenUp(t *testing.T) {
	f := newHiccupFleet(t)
	f.giveUpA(t)
	f.ca.module(t, "r", "later", "r", f.br.URL, "") // r's topic renamed to one not created yet
	if err := f.a.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	f.px.Thaw()
	waitFor(t, "a back (u claimed again)", 20*time.Second, func() bool { return f.held() == 2 })
	f.bHoldsR(t)
}
