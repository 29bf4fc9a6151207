package ktransfer

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"
)

func testBreakers(t *testing.T, threshold, cooldownMs int, backends ...string) *breakers {
	t.Helper()
	m := DefaultModule()
	m.Name, m.BackendServers, m.BreakerFailures, m.BreakerCooldownMs = "m", backends, threshold, cooldownMs
	return newBreakers(m, newMetrics().module("m"))
}

// TestBreakerTransitions walks one backend through its states on a clock
// of its own; the other backend stays closed.
func TestBreakerTransitions(t *testing.T) {
	b := testBreakers(t, 3, 100, "a:1", "b:1")
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	pickA := func(ms int) choice {
		t.Helper()
		c, ok, _, _ := b.pick(at(ms), 0, 2)
		if !ok {
			t.Fatalf("at %d ms: no backend", ms)
		}
		return c
	}
	want := func(ms int, state breakerState, failures int, cooldown time.Duration) {
		t.Helper()
		if s := b.b[0]; s.state != state || s.failures != failures || s.cooldown != cooldown {
			t.Fatalf("at %d ms: %v, %d failures, cooldown %v; want %v, %d, %v", ms, s.state, s.failures, s.cooldown, state, failures, cooldown)
		}
	}
	ms100 := 100 * time.Millisecond
	b.reportAt(choice{i: 0}, false, at(0))
	b.reportAt(choice{i: 0}, false, at(0))
	b.reportAt(choice{i: 0}, true, at(0)) // a success (or a 4xx refusal) ends the run
	want(0, stateClosed, 0, ms100)
	for range 3 {
		b.reportAt(choice{i: 0}, false, at(1))
	}
	want(1, stateOpen, 3, ms100)
	if c := pickA(50); c.i != 1 || c.trial {
		t.Fatalf("open backend chosen during its cooldown: %+v", c)
	}
	b.reportAt(choice{i: 0}, true, at(60)) // a push begun before it opened: ignored
	want(60, stateOpen, 3, ms100)
	c := pickA(101)
	if c.i != 0 || !c.trial {
		t.Fatalf("after the cooldown: %+v, want backend 0's trial", c)
	}
	want(101, stateHalfOpen, 3, ms100)
	if c := pickA(102); c.i != 1 {
		t.Fatalf("a second push to a half-open backend: %+v", c)
	}
	// Failed trials double the cooldown, up to 60 s.
	ms := 101
	for _, next := range []time.Duration{200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000} {
		b.reportAt(c, false, at(ms))
		want(ms, stateOpen, b.b[0].failures, next*time.Millisecond)
		if _, ok, until, _ := b.pick(at(ms+int(next)-1), 0, 1); ok || !until.Equal(at(ms+int(next))) {
			t.Fatalf("at %d ms: a trial before the %v cooldown ended (until %v)", ms, next, until)
		}
		ms += int(next)
		if c = pickA(ms); !c.trial {
			t.Fatalf("at %d ms: no trial after the %v cooldown", ms, next)
		}
	}
	b.reportAt(c, true, at(ms)) // the trial succeeds: closed, cooldown reset
	want(ms, stateClosed, 0, ms100)
	var opened dto.Metric
	if err := b.opened[0].Write(&opened); err != nil {
		t.Fatal(err)
	}
	if n := opened.GetCounter().GetValue(); n != 12 {
		t.Errorf("ktransfer_breaker_opened_total %v, want 12 (the first opening and 11 failed trials)", n)
	}
}

// TestBreakerOneTrialAtATime: 100 workers push to one backend that fails;
// once it is open, only one of them at a time makes the trial push, the
// others wait without spinning and without making attempts, and when the
// backend is back all of them push.
func TestBreakerOneTrialAtATime(t *testing.T) {
	b := testBreakers(t, 1, 20, "a:1")
	var healthy atomic.Bool
	var inTrial, maxInTrial, trials, pushes atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var done sync.WaitGroup
	var succeeded atomic.Int64
	for range 100 {
		done.Go(func() {
			for ctx.Err() == nil {
				c, g := b.acquire(ctx, 0, 1, true)
				if g != chosenBackend {
					return
				}
				pushes.Add(1)
				if c.trial {
					trials.Add(1)
					n := inTrial.Add(1)
					for m := maxInTrial.Load(); n > m && !maxInTrial.CompareAndSwap(m, n); m = maxInTrial.Load() {
					}
					time.Sleep(2 * time.Millisecond) // the trial push
					inTrial.Add(-1)
				}
				if healthy.Load() {
					b.report(c, pushed)
					succeeded.Add(1)
					return
				}
				b.report(c, retry)
			}
		})
	}
	time.Sleep(1200 * time.Millisecond)
	// Opened by the first failures (at most one per worker, all pushing at
	// once), then trials 20, 40, 80, 160, 320, 640 ms apart: 5 by 1.2 s.
	// A stalled host makes fewer trials, never more: at most 6 by 1.2 s,
	// and the 4th is awaited rather than expected by then.
	tr, p, w := trials.Load(), pushes.Load(), b.waits.Load()
	t.Logf("in 1.2 s: %d trials, %d pushes, %d waits", tr, p, w)
	if tr > 6 || p > 100+tr {
		t.Errorf("%d trials and %d pushes in 1.2 s; want at most 6 trials (cooldown 20 ms doubling) and no other push after the first 100", tr, p)
	}
	for deadline := time.Now().Add(10 * time.Second); trials.Load() < 4; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d trials in 10 s; want a trial every cooldown (20 ms doubling)", trials.Load())
		}
	}
	tr, p, w = trials.Load(), pushes.Load(), b.waits.Load()
	if p > 100+tr {
		t.Errorf("%d pushes for %d trials: a push other than the first 100 and the trials", p, tr)
	}
	if w > 100*3*(tr+2) {
		t.Errorf("%d waits for %d trials: the workers spin", w, tr)
	}
	if maxInTrial.Load() != 1 {
		t.Errorf("%d trial pushes at once, want 1", maxInTrial.Load())
	}
	healthy.Store(true)
	done.Wait()
	if succeeded.Load() != 100 {
		t.Errorf("%d of 100 workers pushed after the backend came back", succeeded.Load())
	}
	if st := b.status(); st[0].State != "closed" || st[0].Failures != 0 || st[0].CooldownMs != 20 {
		t.Errorf("status after recovery %+v", st[0])
	}
}

// TestBreakerAbandonedTrial: a trial not pushed (its partition released
// while it waited for a token) lets the next push make it.
func TestBreakerAbandonedTrial(t *testing.T) {
	b := testBreakers(t, 1, 10, "a:1")
	b.report(choice{i: 0}, retry)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, g := b.acquire(ctx, 0, 1, true)
	if g != chosenBackend || !c.trial {
		t.Fatalf("acquire after the cooldown: %+v %v, want a trial", c, g)
	}
	got := make(chan choice)
	go func() {
		c, _ := b.acquire(ctx, 0, 1, true)
		got <- c
	}()
	select {
	case c := <-got:
		t.Fatalf("a second push during the trial: %+v", c)
	case <-time.After(50 * time.Millisecond):
	}
	b.abandon(c)
	select {
	case c := <-got:
		if !c.trial {
			t.Errorf("after the abandoned trial: %+v, want the trial", c)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the waiting push was not woken by the abandoned trial")
	}
}

func TestBreakerOff(t *testing.T) {
	b := testBreakers(t, 0, 1000, "a:1", "b:1")
	for range 10 {
		b.report(choice{i: 0}, retry)
	}
	if c, g := b.acquire(context.Background(), 2, 2, true); g != chosenBackend || c.i != 0 || b.status() != nil {
		t.Errorf("without a breaker: %+v %v, status %v; want backend 0 (round robin), no status", c, g, b.status())
	}
}

// TestBreakerStaleFailureIgnored: a push begun while the backend was
// closed and reported after it opened, had a successful trial and closed
// again, counts for nothing: it does not reopen the recovered backend.
func TestBreakerStaleFailureIgnored(t *testing.T) {
	b := testBreakers(t, 1, 100, "a:1", "b:1")
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	slow, ok, _, _ := b.pick(at(0), 0, 1) // a push that will time out, begun at 0
	if !ok || slow.trial {
		t.Fatalf("first push: %+v %v", slow, ok)
	}
	failed, _, _, _ := b.pick(at(0), 0, 1)
	b.reportAt(failed, false, at(1)) // another push fails: open
	trial, ok, _, _ := b.pick(at(150), 0, 1)
	if !ok || !trial.trial {
		t.Fatalf("after the cooldown: %+v %v, want a trial", trial, ok)
	}
	b.reportAt(trial, true, at(160)) // the backend is back: closed
	b.reportAt(slow, false, at(200)) // the push begun at 0 times out now
	if s := b.b[0]; s.state != stateClosed || s.failures != 0 {
		t.Fatalf("recovered backend after a push begun before it opened failed: %v, %d failures; want closed, 0", s.state, s.failures)
	}
	late, _, _, _ := b.pick(at(210), 0, 1) // a push begun after it closed still counts
	b.reportAt(late, false, at(220))
	if s := b.b[0]; s.state != stateOpen {
		t.Fatalf("a failure after the backend closed: %v, want open (breaker_failures 1)", s.state)
	}
}

// TestBreakerSpreadsOverClosed: an open backend's share goes evenly to the
// closed ones, not all to the one after it.
func TestBreakerSpreadsOverClosed(t *testing.T) {
	for _, tc := range []struct {
		backends []string
		open     []int
	}{
		{[]string{"a:1", "b:1", "c:1"}, []int{0}},
		{[]string{"a:1", "b:1", "c:1"}, []int{1}},
		{[]string{"a:1", "b:1", "c:1", "d:1", "e:1"}, []int{1, 2}},
		{[]string{"a:1", "b:1", "c:1", "d:1"}, []int{3}},
	} {
		b := testBreakers(t, 1, 60000, tc.backends...)
		for _, i := range tc.open {
			c, _, _, _ := b.pick(time.Now(), i, 1)
			b.reportAt(c, false, time.Now())
		}
		n := make([]int, len(tc.backends))
		const pushes = 3000
		for from := range pushes {
			c, ok, _, _ := b.pick(time.Now(), from, len(tc.backends))
			if !ok || c.trial {
				t.Fatalf("%v open %v: push %d: %+v %v", tc.backends, tc.open, from, c, ok)
			}
			n[c.i]++
		}
		want := pushes / (len(tc.backends) - len(tc.open))
		for i, got := range n {
			if slices.Contains(tc.open, i) {
				if got != 0 {
					t.Errorf("%v open %v: open backend %d got %d pushes", tc.backends, tc.open, i, got)
				}
			} else if got < want*95/100 || got > want*105/100 {
				t.Errorf("%v open %v: shares %v, want %d each (±5%%) for the closed ones", tc.backends, tc.open, n, want)
				break
			}
		}
	}
}

// TestBreakerDuplicateBackends: a backend listed twice in backend_servers
// (to weight the round robin) has one breaker, shared by its entries, and
// one series: /metrics used to fail on the duplicate state series.
func TestBreakerDuplicateBackends(t *testing.T) {
	b := testBreakers(t, 2, 60000, "a:1", "A:1", "b:1", "a:1")
	reg := prometheus.NewRegistry()
	reg.MustRegister(statusCollector{status: func() []ModuleStatus { return []ModuleStatus{{Name: "m", Backends: b.status()}} }})
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("gather: %v", err)
	}
	if st := b.status(); len(st) != 2 || st[0].Backend != "a:1" || st[1].Backend != "b:1" {
		t.Fatalf("status %+v, want a:1 and b:1", st)
	}
	// Weighting kept: a:1 gets three pushes in four.
	n := make([]int, 4)
	for from := range 400 {
		c, _, _, _ := b.pick(time.Now(), from, 4)
		n[c.i]++
	}
	if n[0]+n[1]+n[3] != 300 || n[2] != 100 {
		t.Errorf("shares by entry %v, want a:1 (entries 0, 1, 3) 300, b:1 100", n)
	}
	// A failure through either entry counts for the one backend.
	c0, _, _, _ := b.pick(time.Now(), 0, 1)
	c1, _, _, _ := b.pick(time.Now(), 1, 1)
	b.reportAt(c0, false, time.Now())
	b.reportAt(c1, false, time.Now())
	for _, i := range []int{0, 1, 3} {
		if c, ok, _, _ := b.pick(time.Now(), i, 1); ok {
			t.Errorf("entry %d of the open backend chosen: %+v", i, c)
		}
	}
	if c, ok, _, _ := b.pick(time.Now(), 0, 4); !ok || c.i != 2 {
		t.Errorf("with a:1 open: %+v %v, want entry 2 (b:1)", c, ok)
	}
	var opened dto.Metric
	if err := b.opened[0].Write(&opened); err != nil || opened.GetCounter().GetValue() != 1 {
		t.Errorf("ktransfer_breaker_opened_total of a:1: %v %v, want 1", opened.GetCounter().GetValue(), err)
	}
}

// TestBreakerRecheckedAfterZooKeeperWait: a push chooses its backend, then
// waits for ZooKeeper to answer (mayPush); a backend that opened meanwhile
// is not pushed to when ZooKeeper is back: the push chooses again.
func TestBreakerRecheckedAfterZooKeeperWait(t *testing.T) {
	var hits [2]atomic.Int64
	var addrs []string
	for i := range hits {
		s := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits[i].Add(1) }))
		t.Cleanup(s.Close)
		addrs = append(addrs, s.Listener.Addr().String())
	}
	cfg := DefaultModule()
	cfg.Protocol.WriteTimeoutMs, cfg.Protocol.ConnTimeoutMs = 2000, 2000 // as module(): 100 ms fail a loaded machine
	cfg.Name, cfg.Topic, cfg.BackendServers, cfg.Protocol.URI = "m", "t", addrs, "/push"
	cfg.BreakerFailures, cfg.BreakerCooldownMs = 1, 60000
	p, err := newPusher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := newMetrics().module("m")
	tr := &Transfer{cfg: Config{ZKTimeoutMs: 3000}, base: time.Now()}
	tr.lastAnswer.Store(tr.now() - int64(time.Hour)) // ZooKeeper silent: mayPush waits
	m := &module{cfg: cfg, t: tr, log: slog.New(slog.DiscardHandler), pusher: p, stats: st, breakers: newBreakers(cfg, st)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	part := &partition{m: m, ctx: ctx}
	r := &record{msg: &kgo.Record{Topic: "t", Value: []byte("v")}, part: part}
	done := make(chan outcome)
	go func() {
		var buf []byte
		done <- m.handle(ctx, r, &buf)
	}()
	// The push chose backend 0 and waits for ZooKeeper: nothing is pushed.
	time.Sleep(100 * time.Millisecond)
	if n := hits[0].Load() + hits[1].Load(); n != 0 {
		t.Fatalf("%d pushes while ZooKeeper was silent", n)
	}
	c, _, _, _ := m.breakers.pick(time.Now(), 0, 1)
	m.breakers.report(c, retry) // backend 0 opens
	tr.lastAnswer.Store(tr.now())
	select {
	case out := <-done:
		if out != outPushed || hits[0].Load() != 0 || hits[1].Load() != 1 {
			t.Errorf("outcome %v, pushes to backend 0 (open) %d, to backend 1 %d; want pushed to backend 1 only",
				out, hits[0].Load(), hits[1].Load())
		}
	case <-ctx.Done():
		t.Fatal("the push never ended")
	}
}

// TestBreakerInherit: a module's run after a reload takes over the state
// of each backend it still lists (by host:port, its case aside), a trial
// under way becoming due at once; a backend new to it starts closed, and a
// changed breaker_failures or breaker_cooldown_ms starts every breaker anew.
func TestBreakerInherit(t *testing.T) {
	old := testBreakers(t, 1, 1000, "a:1", "b:1", "c:1")
	now := time.Now()
	old.reportAt(choice{i: 0}, false, now) // a:1 open
	old.reportAt(choice{i: 1}, false, now.Add(-2*time.Second))
	trial, ok, _, _ := old.pick(now, 1, 1) // b:1's trial under way
	if !ok || !trial.trial {
		t.Fatalf("b:1 after its cooldown: %+v %v, want its trial", trial, ok)
	}
	old.reportAt(choice{i: 2}, false, now) // c:1 open, and then left out
	next := testBreakers(t, 1, 1000, "B:1", "A:1", "d:1")
	next.inherit(old)
	st := next.status()
	if st[1].State != "open" || st[1].TrialAt == nil || !st[1].TrialAt.Equal(now.Add(time.Second)) {
		t.Errorf("A:1 after the reload: %+v, want open until %v as a:1 was", st[1], now.Add(time.Second))
	}
	if st[0].State != "open" || st[0].TrialAt == nil || st[0].TrialAt.After(time.Now()) {
		t.Errorf("B:1 after the reload: %+v, want open, its trial due at once", st[0])
	}
	if st[2].State != "closed" || st[2].Failures != 0 {
		t.Errorf("d:1, new: %+v, want closed", st[2])
	}
	for _, changed := range []*breakers{testBreakers(t, 2, 1000, "a:1"), testBreakers(t, 1, 2000, "a:1"), testBreakers(t, 0, 1000, "a:1")} {
		changed.inherit(old)
		if s := changed.b[0]; s.state != stateClosed || s.failures != 0 || s.cooldown != changed.base {
			t.Errorf("breaker_failures %d, breaker_cooldown_ms %v: a:1 after the reload %v, %d failures, cooldown %v; want closed anew",
				changed.threshold, changed.base, s.state, s.failures, s.cooldown)
		}
	}
}

// TestBreakerTrialWithoutAnswerCountsAsFailed: the trial push of a
// half-open backend never ends (a backend that accepts and never answers,
// read_timeout_ms 0). Past the trial's bound it counts as failed: the
// backend opens again (twice the cooldown) and the next push after that is
// the next trial, which decides; the hung trial's late answer counts for
// nothing. Before, the backend stayed half-open for good, and every push
// without a closed backend left waited for it: the module stalled.
func TestBreakerTrialWithoutAnswerCountsAsFailed(t *testing.T) {
	b := testBreakers(t, 1, 10, "a:1")
	b.trial = 200 * time.Millisecond
	b.report(choice{i: 0}, retry) // opens for 10 ms
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hung, g := b.acquire(ctx, 0, 1, true)
	if g != chosenBackend || !hung.trial {
		t.Fatalf("acquire after the cooldown: %+v %v, want the trial", hung, g)
	}
	if !b.usable(hung) { // sent: its bound runs
		t.Fatal("the trial refused at its sending")
	}
	start := time.Now()
	next, g := b.acquire(ctx, 1, 1, true)
	if g != chosenBackend || !next.trial {
		t.Fatalf("a push while the trial hangs: %+v %v after %v; want the next trial once the first is past its bound", next, g, time.Since(start).Round(time.Millisecond))
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("the next trial came %v after the first began, within its bound (200 ms)", took)
	}
	b.report(hung, pushed) // the hung trial's late answer: nothing
	if st := b.b[0].state; st != stateHalfOpen {
		t.Fatalf("after the late answer of the trial counted failed: %v, want half_open (the next trial decides)", st)
	}
	b.report(next, pushed)
	if st, cd := b.b[0].state, b.b[0].cooldown; st != stateClosed || cd != b.base {
		t.Errorf("after the next trial's success: %v, cooldown %v; want closed, %v", st, cd, b.base)
	}
}

// TestBreakerTrialBoundRunsFromItsSending: a trial push waits for
// ZooKeeper and for a rate_limit token after its backend was chosen (up to
// worker_num / rate_limit), which may take longer than the trial's bound.
// The bound runs from its sending: the trial must not be counted failed
// by the next push's look, and its answer must decide. Before, the trial
// was counted failed while it still waited, its success was ignored, and
// with another backend keeping the waits long the backend never closed.
func TestBreakerTrialBoundRunsFromItsSending(t *testing.T) {
	b, c := trialOfA(t)
	time.Sleep(250 * time.Millisecond) // the waits for ZooKeeper and a token
	if !b.usable(c) {
		t.Fatal("the trial, still on, refused at its sending")
	}
	if other, ok, _, _ := b.pick(time.Now(), 0, 1); ok {
		t.Fatalf("another push while the trial is out: %+v", other)
	}
	if st, gen := b.b[0].state, b.b[0].gen; st != stateHalfOpen || gen != c.gen {
		t.Fatalf("a's trial just sent, 250 ms after its choice: %v (openings %d, the trial's %d); want half_open, counted from its sending", st, gen, c.gen)
	}
	b.report(c, pushed)
	if st := b.b[0].state; st != stateClosed {
		t.Errorf("after the trial's success: %v, want closed", st)
	}
}

// TestBreakerTrialWaitingForATokenNotFailedByOtherPushes: a's trial push
// waits for its rate_limit token (up to worker_num / rate_limit) longer
// than the trial's bound, while pushes to b, a healthy backend, look at
// the breakers. Their look counted a's unsent trial failed: a opened
// again for a doubled cooldown, its token was spent on nothing, and under
// a rate-limited backlog a recovered backend stayed open as long as the
// backlog lasted. The bound runs from the sending only.
func TestBreakerTrialWaitingForATokenNotFailedByOtherPushes(t *testing.T) {
	b, c := trialOfA(t)
	time.Sleep(250 * time.Millisecond) // the trial waits for its token
	if other, ok, _, _ := b.pick(time.Now(), 1, 2); !ok || other.i != 1 || other.trial {
		t.Fatalf("a push to b meanwhile: %+v %v, want b", other, ok)
	}
	if !b.usable(c) {
		t.Fatalf("a's trial, sent once its token came, refused: a %v (openings %d, the trial's %d)", b.b[0].state, b.b[0].gen, c.gen)
	}
	b.report(c, pushed)
	if st := b.b[0].state; st != stateClosed {
		t.Errorf("after the trial's success: %v, want closed", st)
	}
}

// trialOfA returns the breakers of backends a and b (a trial's bound 200
// ms) and a's trial push, just chosen after a opened for 10 ms.
func trialOfA(t *testing.T) (*breakers, choice) {
	t.Helper()
	b := testBreakers(t, 1, 10, "a:1", "b:1")
	b.trial = 200 * time.Millisecond
	b.report(choice{i: 0}, retry) // a opens for 10 ms
	time.Sleep(20 * time.Millisecond)
	c, ok, _, _ := b.pick(time.Now(), 0, 1)
	if !ok || !c.trial {
		t.Fatalf("a push after the cooldown: %+v %v, want a's trial", c, ok)
	}
	return b, c
}
