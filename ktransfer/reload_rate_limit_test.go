package ktransfer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestReloadsDoNotStallARateLimitedModule attacks the promise that a
// reload restarting a module keeps the rate_limit tokens spent, no more: a
// module with rate_limit 5 (burst: the default, 1) and 8 workers has a
// backlog, its workers waiting for tokens they reserved. Fifteen reloads that
// restart it, 100 ms apart, end those waits: no attempt used those
// tokens. The new run took over the balance, those reservations included,
// and each reload added its waiters': the module pushed nothing for
// seconds (20 reloads: 22 s) while it paid back tokens no attempt used.
// After the last reload it must go on at about 5 pushes a second.
func TestReloadsDoNotStallARateLimitedModule(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	limit := "rate_limit: 5\n"
	write := func(i int) {
		c.module(t, "m", "t", "m", bk.URL, limit+fmt.Sprintf("zk_offset_update_interval_sec: %d\n", 1+i%2))
	}
	write(0)
	var recs [][2]string
	for i := range 400 {
		recs = append(recs, [2]string{fmt.Sprintf("k%d", i%100), fmt.Sprint(i)})
	}
	e.produce(t, "t", recs)
	r := startConf(t, c, nil)
	waitFor(t, "the first pushes", 10*time.Second, func() bool { return len(bk.got()) >= 3 })
	const reloads = 15
	for i := 1; i <= reloads; i++ {
		write(i)
		if err := r.tr.Reload(context.Background()); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	last := time.Now()
	before := len(bk.got())
	time.Sleep(6 * time.Second)
	got := bk.got()
	after := got[before:]
	first := "none"
	if len(after) > 0 {
		first = after[0].at.Sub(last).Round(time.Millisecond).String()
	}
	t.Logf("pushes before the storm's end %d; in the 6 s after the last reload %d (first after %s)", before, len(after), first)
	// 5/s for 6 s is 30; allow half of it.
	if len(after) == 0 {
		waitFor(t, "a push at last", 30*time.Second, func() bool { return len(bk.got()) > before })
		t.Logf("first push after the last reload: %v later", bk.got()[before].at.Sub(last).Round(time.Millisecond))
	}
	if len(after) < 15 {
		t.Fatalf("%d pushes in the 6 s after %d reloads at rate_limit 5 (first after %s): the module repays tokens no attempt used", len(after), reloads, first)
	}
}
