package ktransfer

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRateLimitHoldsAfterAZooKeeperWait attacks README's burst ("attempts
// allowed at once after a quiet spell"): choose took the rate_limit token
// first and waited for ZooKeeper (mayPush) afterwards. While ZooKeeper was
// silent each worker's token came due and was kept; when ZooKeeper
// answered again every worker pushed at the same instant: with rate_limit
// 10 and burst 1 the backend got 5 requests within 5 ms.
func TestRateLimitHoldsAfterAZooKeeperWait(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	s := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
	}))
	t.Cleanup(s.Close)
	cfg := DefaultModule()
	cfg.Protocol.WriteTimeoutMs, cfg.Protocol.ConnTimeoutMs = 2000, 2000
	cfg.Name, cfg.Topic, cfg.BackendServers, cfg.Protocol.URI = "m", "t", []string{s.Listener.Addr().String()}, "/push"
	cfg.RateLimit, cfg.Burst = 10, 1
	cfg.WorkerNum = 5
	p, err := newPusher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := newMetrics().module("m")
	tr := &Transfer{cfg: Config{ZKTimeoutMs: 3000}, base: time.Now()}
	tr.lastAnswer.Store(tr.now() - int64(time.Hour)) // ZooKeeper silent: mayPush waits
	m := &module{cfg: cfg, t: tr, log: slog.New(slog.DiscardHandler), pusher: p, stats: st,
		breakers: newBreakers(cfg, st), limiter: newLimiter(cfg)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	part := &partition{m: m, ctx: ctx}
	var wg sync.WaitGroup
	for i := range 5 { // five workers, five records
		r := &record{msg: &kgo.Record{Topic: "t", Key: []byte(strconv.Itoa(i)), Value: []byte("v")}, part: part}
		wg.Go(func() {
			var buf []byte
			if out := m.handle(ctx, r, &buf); out != outPushed {
				t.Errorf("record %d: %v", i, out)
			}
		})
	}
	time.Sleep(800 * time.Millisecond) // every token due (0..400 ms), ZooKeeper still silent
	tr.lastAnswer.Store(tr.now())      // ZooKeeper answers again
	wg.Wait()
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	if len(at) != 5 {
		t.Fatalf("%d pushes, want 5", len(at))
	}
	span := at[4].Sub(at[0])
	t.Logf("5 pushes within %v", span)
	// burst 1 then 10/s: 5 attempts need at least 400 ms.
	if span < 300*time.Millisecond {
		t.Errorf("5 pushes within %v at rate_limit 10, burst 1 (want >= 400ms): tokens taken before the ZooKeeper wait were spent all at once after it", span)
	}
}
