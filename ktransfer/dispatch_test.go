package ktransfer

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// eachRule runs test as a subtest per dispatch rule, with a scheduler for
// workers and window.
func eachRule(t *testing.T, workers, window int, test func(t *testing.T, rule string, cfg Module, s scheduler)) {
	for _, rule := range []string{dispatchHash, dispatchIdleWorker} {
		t.Run(rule, func(t *testing.T) {
			cfg := DefaultModule()
			cfg.Dispatch, cfg.WorkerNum, cfg.WindowSize = rule, workers, window
			test(t, rule, cfg, newScheduler(cfg))
		})
	}
}

// TestSchedulers runs both dispatch rules with many workers and random push
// times: every record is taken exactly once, a key's records in offset
// order and never two of one key at once, at most worker_num at a time,
// and close ends the workers once everything queued was taken.
func TestSchedulers(t *testing.T) {
	eachRule(t, 8, 64, func(t *testing.T, rule string, cfg Module, s scheduler) {
		window := make(chan struct{}, cfg.WindowSize) // the module's slots

		var mu sync.Mutex
		busy := map[string]bool{} // keys being pushed
		last := map[string]int64{}
		taken := map[int64]bool{}
		running, most := 0, 0
		push := func(r *record) {
			key := string(r.msg.Key)
			mu.Lock()
			if key != "" && busy[key] {
				t.Errorf("key %s: two records pushed at once", key)
			}
			if prev, ok := last[key]; ok && key != "" && r.msg.Offset <= prev {
				t.Errorf("key %s: offset %d after %d", key, r.msg.Offset, prev)
			}
			if taken[r.msg.Offset] {
				t.Errorf("offset %d taken twice", r.msg.Offset)
			}
			busy[key], last[key], taken[r.msg.Offset] = true, r.msg.Offset, true
			running++
			most = max(most, running)
			mu.Unlock()
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			mu.Lock()
			busy[key] = false
			running--
			mu.Unlock()
			<-window
		}
		var workers sync.WaitGroup
		for i := range cfg.WorkerNum {
			workers.Go(func() { s.work(i, push) })
		}
		const n = 5000
		for o := range int64(n) {
			var key []byte
			if o%10 != 0 { // every tenth without a key
				key = []byte("k" + strconv.Itoa(rand.IntN(30)))
			}
			window <- struct{}{}
			if !s.put(context.Background(), &record{msg: &kgo.Record{Key: key, Offset: o}}) {
				t.Fatal("put refused")
			}
		}
		s.close()
		done := make(chan struct{})
		go func() { workers.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("workers still running 10 s after close")
		}
		if len(taken) != n {
			t.Errorf("%d records taken, want %d", len(taken), n)
		}
		if most > cfg.WorkerNum {
			t.Errorf("%d pushes at once, worker_num is %d", most, cfg.WorkerNum)
		}
	})
}

// TestIdleWorkerDoesNotWaitForOtherKeys: one key whose pushes are slow
// holds one worker; with idle_worker every other key's records go to the
// other worker meanwhile. With hash, the keys that hash to the slow key's
// worker wait behind it.
func TestIdleWorkerDoesNotWaitForOtherKeys(t *testing.T) {
	eachRule(t, 2, 300, func(t *testing.T, rule string, cfg Module, s scheduler) {
		slowDone := make(chan struct{})
		allFast := make(chan struct{}) // closed when the 200 others are pushed
		var mu sync.Mutex
		fastBeforeSlow := 0 // fast records pushed before the slow key's last one finished
		push := func(r *record) {
			if string(r.msg.Key) == "slow" {
				time.Sleep(100 * time.Millisecond)
				if r.msg.Offset == 4 {
					// The last slow push lasts until every other record
					// is pushed, 3 s at most: the others behind it (hash)
					// wait that long, and a loaded host has 3 s to push
					// them on the other worker (idle_worker).
					select {
					case <-allFast:
					case <-time.After(3 * time.Second):
					}
					close(slowDone)
				}
				return
			}
			select {
			case <-slowDone:
			default:
				mu.Lock()
				fastBeforeSlow++
				if fastBeforeSlow == 200 {
					close(allFast)
				}
				mu.Unlock()
			}
		}
		var workers sync.WaitGroup
		for i := range cfg.WorkerNum {
			workers.Go(func() { s.work(i, push) })
		}
		for o := range int64(5) {
			s.put(context.Background(), &record{msg: &kgo.Record{Key: []byte("slow"), Offset: o}})
		}
		for o := int64(5); o < 205; o++ {
			s.put(context.Background(), &record{msg: &kgo.Record{Key: []byte("user" + strconv.Itoa(int(o))), Offset: o}})
		}
		s.close()
		workers.Wait()
		if rule == dispatchIdleWorker && fastBeforeSlow != 200 {
			t.Errorf("idle_worker: %d of 200 other records pushed while the slow key held a worker, want all", fastBeforeSlow)
		}
		if rule == dispatchHash && fastBeforeSlow == 200 {
			t.Errorf("hash: no record waited behind the slow key; the test does not show the difference")
		}
	})
}

// TestCloseWithRecordsQueued: close is called while records without a key
// wait (and a worker is busy); the workers take every one of them and end.
// (A worker taking a shared record after close signalled a closed channel:
// a panic.)
func TestCloseWithRecordsQueued(t *testing.T) {
	eachRule(t, 2, 64, func(t *testing.T, _ string, _ Module, s scheduler) {
		for i := range 20 {
			s.put(context.Background(), &record{msg: &kgo.Record{Offset: int64(i)}})
		}
		s.close()
		var mu sync.Mutex
		taken := 0
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				s.work(i, func(*record) {
					time.Sleep(time.Millisecond)
					mu.Lock()
					taken++
					mu.Unlock()
				})
			})
		}
		wg.Wait()
		if taken != 20 {
			t.Errorf("%d of 20 queued records taken after close", taken)
		}
	})
}

// TestBusyLaneArrayBounded: one key whose lane never empties (its next
// record is put before the one before is pushed: a backlog of one key).
// With emptied lanes reused, the lane's array kept a slot for every record
// it had held until it emptied (100,000 slots here); it must stay at about
// the records waiting.
func TestBusyLaneArrayBounded(t *testing.T) {
	cfg := DefaultModule()
	cfg.Dispatch, cfg.WorkerNum, cfg.WindowSize = dispatchIdleWorker, 1, 2
	k := newKeyLanes(cfg)
	const n = 100_000
	pushed := make(chan int64)
	proceed := make(chan struct{})
	largest := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.work(0, func(r *record) {
			k.mu.Lock()
			if l := k.byKey["hot"]; l != nil {
				largest = max(largest, cap(l.recs))
			}
			k.mu.Unlock()
			pushed <- r.msg.Offset
			<-proceed
		})
	}()
	put := func(o int64) { k.put(context.Background(), &record{msg: &kgo.Record{Key: []byte("hot"), Offset: o}}) }
	put(0)
	for o := int64(0); o < n; o++ {
		if got := <-pushed; got != o {
			t.Fatalf("pushed offset %d, want %d", got, o)
		}
		if o+1 < n {
			put(o + 1) // the next one waits while this one is pushed
		}
		proceed <- struct{}{}
	}
	k.close()
	<-done
	if largest > 64 {
		t.Errorf("a lane with at most 2 records waiting grew its array to %d slots", largest)
	}
}
