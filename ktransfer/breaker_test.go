package ktransfer

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
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
				c, ok := b.acquire(ctx, 0, 1)
				if !ok {
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
	tr, p, w := trials.Load(), pushes.Load(), b.waits.Load()
	t.Logf("in 1.2 s: %d trials, %d pushes, %d waits", tr, p, w)
	if tr < 4 || tr > 6 || p > 100+tr {
		t.Errorf("%d trials and %d pushes in 1.2 s; want 4..6 trials (cooldown 20 ms doubling) and no other push after the first 100", tr, p)
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
	c, ok := b.acquire(ctx, 0, 1)
	if !ok || !c.trial {
		t.Fatalf("acquire after the cooldown: %+v %v, want a trial", c, ok)
	}
	got := make(chan choice)
	go func() {
		c, _ := b.acquire(ctx, 0, 1)
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
	if c, ok := b.acquire(context.Background(), 2, 2); !ok || c.i != 0 || b.status() != nil {
		t.Errorf("without a breaker: %+v %v, status %v; want backend 0 (round robin), no status", c, ok, b.status())
	}
}
