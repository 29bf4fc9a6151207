package ktransfer_test

import (
	"context"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestReloadKeepsRateLimitSpent: a module with rate_limit 5 and burst 20
// pushes a backlog: its burst at once, then 5 a second. A reload changes
// one of its keys (it restarts) while the bucket is empty. The backend must
// never see more than burst + rate × elapsed attempts since the first:
// the restarted run goes on from the tokens spent. (Before, it started
// with a full bucket: a second burst of 20 right after the reload.)
func TestReloadKeepsRateLimitSpent(t *testing.T) {
	const rate, burst = 5.0, 20
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	limit := "rate_limit: 5\nburst: 20\n"
	c.module(t, "m", "t", "m", bk.URL, limit)
	produceN(t, e, 0, 100)
	r := startConf(t, c, nil)
	waitFor(t, "the burst and a few more pushed", 10*time.Second, func() bool { return len(bk.got()) >= burst+5 })
	c.module(t, "m", "t", "m", bk.URL, limit+"breaker_cooldown_ms: 12345\n") // changed: the module restarts
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	reloaded := len(bk.got())
	waitFor(t, "pushes after the reload", 10*time.Second, func() bool { return len(bk.got()) >= reloaded+10 })
	time.Sleep(time.Second) // what the restarted run pushes meanwhile is checked too
	got := bk.got()
	t0 := got[0].at
	worst, at, over := 0.0, time.Duration(0), 0
	for i, p := range got {
		if excess := float64(i+1) - (burst + rate*p.at.Sub(t0).Seconds()); excess > worst {
			worst, at, over = excess, p.at.Sub(t0), i+1
		}
	}
	if worst > 2 { // 2: timing slack
		t.Fatalf("%d attempts within %v of the first (the reload after %d): %.1f over rate_limit %v with burst %d",
			over, at.Round(time.Millisecond), reloaded, worst, rate, burst)
	}
}
