package ktransfer

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// keyFor returns a key that dispatch: hash sends to worker i of n.
func keyFor(i, n int) []byte {
	for k := 0; ; k++ {
		key := []byte("k" + strconv.Itoa(k))
		h := fnv.New32a()
		h.Write(key)
		if int(h.Sum32()%uint32(n)) == i {
			return key
		}
	}
}

// TestHashSharedRecordNotLeftWhileWorkerIdle: dispatch: hash, two
// workers asleep. A keyless record S is put (its sharedWake token is handed
// to worker 0, the first sleeper), then a record Y of a key of worker 0.
// Worker 0 wakes, prefers its own queue, takes Y (a long push) and does not
// pass the token on; worker 1 stays asleep while S waits in the shared
// queue until Y's push ends.
func TestHashSharedRecordNotLeftWhileWorkerIdle(t *testing.T) {
	for iter := 0; iter < 50; iter++ {
		cfg := DefaultModule()
		cfg.Dispatch, cfg.WorkerNum, cfg.WindowSize = dispatchHash, 2, 64
		q := newHashQueues(cfg)
		release := make(chan struct{})
		sPushed := make(chan struct{})
		push := func(r *record) {
			if len(r.msg.Key) == 0 {
				close(sPushed)
				return
			}
			<-release // Y: a push that takes long (a failing backend, retried)
		}
		var wg sync.WaitGroup
		wg.Go(func() { q.work(0, push) })
		time.Sleep(20 * time.Millisecond) // worker 0 asleep first: first in sharedWake's queue
		wg.Go(func() { q.work(1, push) })
		time.Sleep(20 * time.Millisecond)
		q.put(context.Background(), &record{msg: &kgo.Record{Offset: 0}})                    // S, keyless
		q.put(context.Background(), &record{msg: &kgo.Record{Key: keyFor(0, 2), Offset: 1}}) // Y, worker 0's key
		select {
		case <-sPushed:
			close(release)
			q.close()
			wg.Wait()
			continue
		case <-time.After(10 * time.Second): // taken at once; room for a loaded host
		}
		q.mu.Lock()
		shared := len(q.shared)
		q.mu.Unlock()
		close(release)
		q.close()
		wg.Wait()
		t.Fatalf("iteration %d: keyless record not taken for 10 s while worker 1 was idle (shared queue holds %d): it waits behind worker 0's push", iter, shared)
	}
}

// TestFullWindowWakesCommitterAgain: the window is full and nothing is
// acknowledged; the reader wakes the committer at once (its last wake-up is
// old) and then waits on r.wake with no timer. The commit finds nothing to
// store. A few records (fewer than the threshold) are then acknowledged
// within commitAfter of the reader's wake-up, and nothing else moves. No
// one wakes the committer again: the full window waits for the periodic
// commit (zk_offset_update_interval_sec, 1 s when unset).
func TestFullWindowWakesCommitterAgain(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for iter := 0; iter < 20; iter++ {
		cfg := DefaultModule()
		cfg.WorkerNum, cfg.WindowSize = 100, 200
		m := &module{cfg: cfg, slots: make(chan struct{}, cfg.WindowSize), commitKick: make(chan struct{}, 1), stats: newMetrics().module("m")}
		m.reader = newReader(m, cl)
		m.reader.topic = "t"
		p := &partition{m: m, tracker: newTracker(0)}
		for o := range int64(cfg.WindowSize) {
			m.slots <- struct{}{}
			p.tracker.dispatch(o)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { m.reader.run(ctx) })
		select {
		case <-m.commitKick: // the committer runs: nothing acknowledged, nothing stored, no signal
		case <-time.After(5 * time.Second):
			cancel()
			wg.Wait()
			t.Fatal("reader did not wake the committer with a full window")
		}
		for o := range int64(5) { // fewer than (window-workers)/4 = 25
			m.ack(&record{msg: &kgo.Record{Offset: o}, part: p})
		}
		select {
		case <-m.commitKick:
			cancel()
			wg.Wait()
			continue // woken: fine
		case <-time.After(5 * time.Second): // woken within commitAfter; no periodic commit runs here
		}
		cancel()
		wg.Wait()
		t.Fatalf("window full (%d/%d), %d records acknowledged, committer not woken for 5 s (250x commitAfter): only the periodic commit frees the window",
			len(m.slots), cap(m.slots), m.uncommitted.Load())
	}
}

// TestDroppedPartitionLeavesNoUncommitted: a partition dropped without
// ZooKeeper (session lost) frees its slots, but the records it had
// acknowledged stay in m.uncommitted for ever. ack's "due" rule then sees
// phantom acknowledged records: every later ack that moves a frontier
// wakes the committer (the per-ack commits this change meant to end).
func TestDroppedPartitionLeavesNoUncommitted(t *testing.T) {
	m, p := heldPartition(t, 200) // threshold (200-4)/4 = 49
	for o := range int64(60) {
		m.slots <- struct{}{}
		p.tracker.dispatch(o)
	}
	for o := range int64(60) {
		m.ack(&record{msg: &kgo.Record{Offset: o}, part: p})
	}
	m.release(m.claims[0], drop)
	if len(m.slots) != 0 {
		t.Fatalf("slots %d after release", len(m.slots))
	}
	if n := m.uncommitted.Load(); n != 0 {
		t.Errorf("after the dropped partition's slots were freed, uncommitted = %d, want 0 (never decremented: ack's due rule counts them for ever)", n)
	}
}

// TestReleaseGivesBackSlotsAboveTheFrontier: records acknowledged behind a
// slow one are neither in flight nor below the frontier; a release must
// give their slots back too, or every rebalance while a backend is slow
// shrinks the window until the module stops reading.
func TestReleaseGivesBackSlotsAboveTheFrontier(t *testing.T) {
	m, p := heldPartition(t, 50)
	for o := range int64(20) {
		m.slots <- struct{}{}
		p.tracker.dispatch(o)
	}
	for o := int64(1); o < 20; o++ { // offset 0 is still being pushed
		m.ack(&record{msg: &kgo.Record{Offset: o}, part: p})
	}
	m.release(m.claims[0], drop)
	if n := len(m.slots); n != 0 {
		t.Fatalf("window_used %d after the release, want 0: the slots of records acknowledged above the frontier leak", n)
	}
}

// testModule is a module of tr running cfg, with all its parts but a
// pusher and a Kafka client that reaches no broker: for tests that drive
// its pieces (commits, releases, the reader's wake-ups) by hand.
func testModule(t *testing.T, tr *Transfer, cfg Module) *module {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	m := &module{cfg: cfg, t: tr, log: tr.log, slots: make(chan struct{}, cfg.WindowSize), commitKick: make(chan struct{}, 1),
		parts: map[int32]*partition{}, claims: map[int32]*claimed{}, releasing: map[int32]int{}, handing: map[int32]*claimed{}, stats: newMetrics().module("m"), sched: newScheduler(cfg)}
	m.reader = newReader(m, cl)
	return m
}

// heldPartition is a module of 4 workers and window window, without Kafka
// or ZooKeeper, holding partition 0 from offset 0 (its read loop already
// returned, as a release expects).
func heldPartition(t *testing.T, window int) (*module, *partition) {
	cfg := DefaultModule()
	cfg.WorkerNum, cfg.WindowSize = 4, window
	m := testModule(t, &Transfer{log: slog.New(slog.DiscardHandler)}, cfg)
	m.pusher = &pusher{}
	p := &partition{m: m, id: 0, tracker: newTracker(0)}
	done := make(chan struct{})
	close(done)
	m.parts[0] = p
	m.claims[0] = &claimed{part: p, cancel: func() {}, done: done}
	return m, p
}

// fullWindow is heldPartition with its window of 10 full.
func fullWindow(t *testing.T) *module {
	m, p := heldPartition(t, 10)
	m.reader.topic = "t"
	for o := range int64(10) {
		m.slots <- struct{}{}
		p.tracker.dispatch(o)
	}
	return m
}

// runReader runs m's reader until stop, which waits for it.
func runReader(t *testing.T, m *module) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.reader.run(ctx) })
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// windowFullSeconds is ktransfer_window_full_seconds_total of m.
func windowFullSeconds(m *module) float64 {
	var v dto.Metric
	_ = m.stats.windowFullC.Write(&v)
	return v.GetCounter().GetValue()
}

// TestWindowFullTimeCounted: ktransfer_window_full_seconds_total counts
// the time reading waited on a full window, from when it filled to when a
// commit freed slots.
func TestWindowFullTimeCounted(t *testing.T) {
	m := fullWindow(t)
	start := time.Now()
	runReader(t, m)
	pollUntil(t, "the reader to pause on the full window", 5*time.Second, func() bool { return len(m.reader.cl.PauseFetchTopics()) > 0 })
	const held = 200 * time.Millisecond
	time.Sleep(held) // the window stays full this long
	<-m.slots        // as a commit frees a slot
	m.reader.signal()
	pollUntil(t, fmt.Sprintf("ktransfer_window_full_seconds_total to reach %v", held), 5*time.Second,
		func() bool { return windowFullSeconds(m) >= held.Seconds() })
	if got, full := windowFullSeconds(m), time.Since(start); got > full.Seconds() {
		t.Errorf("ktransfer_window_full_seconds_total = %.3f, more than the %v since the reader started", got, full)
	}
}

// TestWindowFullCountedWhileFull: a window that stays full (a backend
// down, every slot held by a record being retried) shows in
// ktransfer_window_full_seconds_total while it lasts, not only when it
// ends.
func TestWindowFullCountedWhileFull(t *testing.T) {
	m := fullWindow(t)
	// Before runReader, as in TestWindowFullTimeCounted: the reader counts
	// from its first pass, which a loaded machine may run before
	// runReader returns.
	start := time.Now()
	runReader(t, m)
	const held = 300 * time.Millisecond
	pollUntil(t, fmt.Sprintf("ktransfer_window_full_seconds_total to reach %v with the window still full", held), 5*time.Second,
		func() bool { return windowFullSeconds(m) >= held.Seconds() })
	if got, full := windowFullSeconds(m), time.Since(start); got > full.Seconds()+0.1 {
		t.Errorf("ktransfer_window_full_seconds_total = %.3f after the window was full for %v", got, full)
	}
}

// TestWindowFullCountedWhenReaderStops: a module stopped (reload,
// shutdown) while its window is full keeps the time since the reader's
// last pass in ktransfer_window_full_seconds_total. (The committer was
// woken just now, as far as the reader knows: it sleeps the whole time,
// and only its last count, when it returns, can hold that time.)
func TestWindowFullCountedWhenReaderStops(t *testing.T) {
	m := fullWindow(t)
	m.lastKick.Store(monoNow() + int64(time.Hour))
	start := time.Now()
	stop := runReader(t, m)
	pollUntil(t, "the reader to pause on the full window", 5*time.Second, func() bool { return len(m.reader.cl.PauseFetchTopics()) > 0 })
	const held = 100 * time.Millisecond
	time.Sleep(held) // full, the reader asleep
	stop()
	if got, full := windowFullSeconds(m), time.Since(start); got < held.Seconds() || got > full.Seconds() {
		t.Errorf("window full for %v, then the reader stopped: ktransfer_window_full_seconds_total = %.3f, want %.3f-%.3f",
			full, got, held.Seconds(), full.Seconds())
	}
}

// TestAckDuringCommitDoesNotQueueAnother: the records a commit in flight
// covers do not count toward the next one. Counted, every acknowledgement
// while a commit was written found the threshold reached and queued the
// next commit: ZooKeeper wrote back to back, each write covering only what
// the workers finished during the previous one (about 1,000 writes per
// 200,000 records on the benchmark, ZooKeeper's CPU taken from the pushes).
func TestAckDuringCommitDoesNotQueueAnother(t *testing.T) {
	m, p := heldPartition(t, 1000)
	m.cfg.WorkerNum = 100 // dueAt: (1000-100)/2 = 450 with no headroom measured yet
	for o := range int64(600) {
		m.slots <- struct{}{}
		p.tracker.dispatch(o)
	}
	for o := range int64(450) {
		m.ack(&record{msg: &kgo.Record{Offset: o}, part: p})
	}
	select {
	case <-m.commitKick:
	default:
		t.Fatal("450 records acknowledged: no commit due")
	}
	m.committing.Store(450) // the committer took them: its write is in flight
	// Only the count may wake the committer here: with lastKick now, a
	// deschedule of commitAfter (20 ms) before the acknowledgements below
	// lets ack wake it by time, rightly. Counting the 450 in flight would
	// still reach dueAt and wake it.
	m.lastKick.Store(monoNow() + int64(time.Hour))
	for o := int64(450); o < 500; o++ {
		m.ack(&record{msg: &kgo.Record{Offset: o}, part: p})
	}
	select {
	case <-m.commitKick:
		t.Fatalf("50 records acknowledged during a commit of 450 (threshold %d) queued another commit", m.dueAt())
	default:
	}
}

// TestDueAt: the commit threshold is the window beyond worker_num less
// twice the records acknowledged during the last commit, between a quarter
// and half of that span.
func TestDueAt(t *testing.T) {
	for _, c := range []struct {
		window, workers int
		headroom, want  int64
	}{
		{1000, 100, 0, 450},
		{1000, 100, 200, 450},
		{1000, 100, 300, 300},
		{1000, 100, 500, 225},
		{200, 100, 0, 50},
		{200, 100, 40, 25},
		{100, 100, 0, 1},
		{50, 100, 0, 1},
	} {
		m := &module{cfg: Module{WorkerNum: c.workers}, slots: make(chan struct{}, c.window)}
		m.headroom.Store(c.headroom)
		if got := m.dueAt(); got != c.want {
			t.Errorf("window %d, %d workers, headroom %d: dueAt %d, want %d", c.window, c.workers, c.headroom, got, c.want)
		}
	}
}
