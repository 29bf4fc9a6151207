package ktransfer_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// breakerOf is tr's /status breaker of backend addr in its first module.
func breakerOf(t *testing.T, tr *ktransfer.Transfer, addr string) ktransfer.BackendStatus {
	t.Helper()
	st := tr.Status()
	if len(st) == 0 {
		t.Fatal("no module running")
	}
	for _, b := range st[0].Backends {
		if b.Backend == addr {
			return b
		}
	}
	t.Fatalf("no breaker of %s in %+v", addr, st[0].Backends)
	return ktransfer.BackendStatus{}
}

// TestReloadKeepsOpenBreaker: of two backends, one answers 500 and its
// breaker opens (breaker_failures 3, cooldown 60 s). A reload changes a
// key of the module that has nothing to do with its breakers (it
// restarts). The dead backend must stay open, its trial still a minute
// away: the records produced after the reload all go to the good one.
// (Before, the restarted run began with every breaker closed: the dead
// backend was pushed to again until it failed breaker_failures times.)
func TestReloadKeepsOpenBreaker(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	good, dead, goodAddr, deadAddr := goodAndDead(t)
	c := e.reloadConf(t, "m")
	breaker := "breaker_failures: 3\nbreaker_cooldown_ms: 60000\n"
	c.module(t, "m", "t", "m", deadAddr+", "+goodAddr, breaker)
	produceN(t, e, 0, 100)
	r := startConf(t, c, nil)
	waitFor(t, "the first 100 records at the good backend", 20*time.Second, func() bool { return distinct(good) == 100 })
	before := breakerOf(t, r.tr, deadAddr)
	if before.State != "open" || before.TrialAt == nil {
		t.Fatalf("dead backend's breaker after 100 records: %+v, want open", before)
	}

	c.module(t, "m", "t", "m", deadAddr+", "+goodAddr, breaker+"max_retry_times: 1000\n") // changed: the module restarts
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	after := breakerOf(t, r.tr, deadAddr)
	produceN(t, e, 100, 200)
	waitFor(t, "the next 100 records at the good backend", 20*time.Second, func() bool { return distinct(good) == 200 })
	hits := 0
	for _, p := range dead.got() {
		if v, err := strconv.Atoi(p.body); err == nil && v >= 100 {
			hits++
		}
	}
	if hits > 0 || after.State != "open" || after.TrialAt == nil || !after.TrialAt.Equal(*before.TrialAt) {
		t.Errorf("after the reload the dead backend got %d pushes of the records produced since, its breaker %+v; "+
			"want none, and still open until %v (before the reload: %+v)", hits, after, before.TrialAt, before)
	}
}

// TestReloadKeepsBreakerCooldown: a dead backend's cooldown doubles with
// each failed trial (breaker_failures 1, cooldown 100 ms). A reload that
// restarts the module for a key unrelated to its breakers keeps the
// doubled cooldown: the next failed trial doubles it further instead of
// starting again from breaker_cooldown_ms.
func TestReloadKeepsBreakerCooldown(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	_, _, goodAddr, deadAddr := goodAndDead(t)
	c := e.reloadConf(t, "m")
	// 50 records a second keep pushes coming, so that trials are made.
	conf := "breaker_failures: 1\nbreaker_cooldown_ms: 100\nrate_limit: 50\n"
	c.module(t, "m", "t", "m", deadAddr+", "+goodAddr, conf)
	produceN(t, e, 0, 500)
	r := startConf(t, c, nil)
	waitFor(t, "three failed trials (cooldown 800 ms)", 20*time.Second, func() bool {
		return breakerOf(t, r.tr, deadAddr).CooldownMs >= 800
	})
	before := breakerOf(t, r.tr, deadAddr)
	c.module(t, "m", "t", "m", deadAddr+", "+goodAddr, conf+"max_retry_times: 1000\n") // changed: the module restarts
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if after := breakerOf(t, r.tr, deadAddr); after.CooldownMs < before.CooldownMs || after.State == "closed" {
		t.Errorf("dead backend's breaker after the reload: %+v; want still open with a cooldown of at least %d ms (before: %+v)",
			after, before.CooldownMs, before)
	}
}

// TestReloadBreakerSettingsChanged: a reload that changes
// breaker_cooldown_ms starts the module's breakers anew, with the new
// cooldown: the new setting applies at once.
func TestReloadBreakerSettingsChanged(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	_, _, goodAddr, deadAddr := goodAndDead(t)
	c := e.reloadConf(t, "m")
	c.module(t, "m", "t", "m", deadAddr+", "+goodAddr, "breaker_failures: 1\nbreaker_cooldown_ms: 60000\n")
	produceN(t, e, 0, 20)
	r := startConf(t, c, nil)
	waitFor(t, "the dead backend's breaker open", 20*time.Second, func() bool { return breakerOf(t, r.tr, deadAddr).State == "open" })
	c.module(t, "m", "t", "m", deadAddr+", "+goodAddr, "breaker_failures: 1\nbreaker_cooldown_ms: 30000\n")
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if after := breakerOf(t, r.tr, deadAddr); after.CooldownMs != 30000 {
		t.Errorf("dead backend's breaker after breaker_cooldown_ms changed to 30000: %+v; want the new cooldown", after)
	}
}

// TestReloadChangedURIStartsBreakersAnew: the only backend answers 500 at
// the module's uri, and its breaker opens for a minute. A reload that
// corrects the uri (same backend) is the fix: the records must be pushed
// at once, not held until the trial a breaker of the old pushes scheduled.
func TestReloadChangedURIStartsBreakersAnew(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if strings.HasPrefix(p.path, "/wrong/") {
			w.WriteHeader(500)
		}
	})
	addr := bk.Listener.Addr().String()
	c := e.reloadConf(t, "m")
	breaker := "breaker_failures: 1\nbreaker_cooldown_ms: 60000\n"
	c.module(t, "m", "t", "wrong", bk.URL, breaker)
	produceN(t, e, 0, 20)
	r := startConf(t, c, nil)
	waitFor(t, "the backend's breaker open", 20*time.Second, func() bool { return breakerOf(t, r.tr, addr).State == "open" })

	c.module(t, "m", "t", "right", bk.URL, breaker) // the uri corrected: the module restarts
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	right := func() int {
		seen := map[string]bool{}
		for _, p := range bk.got() {
			if strings.HasPrefix(p.path, "/right/") {
				seen[p.body] = true
			}
		}
		return len(seen)
	}
	deadline := time.Now().Add(15 * time.Second)
	for right() < 20 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := right(); n < 20 {
		t.Errorf("15 s after the reload correcting the uri, %d of 20 records pushed to it; breaker %+v",
			n, breakerOf(t, r.tr, addr))
	}
}

// goodAndDead starts two backends, one answering 200 and one 500, and
// returns them with their host:port.
func goodAndDead(t *testing.T) (good, dead *backend, goodAddr, deadAddr string) {
	good = newBackend(t, nil)
	dead = newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(500) })
	return good, dead, good.Listener.Addr().String(), dead.Listener.Addr().String()
}
