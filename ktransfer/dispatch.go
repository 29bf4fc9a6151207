package ktransfer

import (
	"context"
	"hash/fnv"
	"sync"
)

// scheduler hands dispatched records to the module's workers. Either way a
// key's records are pushed one at a time in offset order, different keys
// in parallel, and at most worker_num at once.
type scheduler interface {
	// put queues r; false when ctx ended first.
	put(ctx context.Context, r *record) bool
	// work runs worker i: push is called for each record it takes, until
	// close was called and every queued record was taken.
	work(i int, push func(*record))
	// close says no record will be put any more.
	close()
	// drop forgets the queued records of partition p, released: its
	// window slots are given back, so what is queued of it is no longer
	// bounded by the window (a worker stuck on a push that never ends
	// would keep it, and every claim back would add the window again).
	// A record being pushed stays.
	drop(p *partition)
}

// without removes the records of p from recs, in place.
func without(recs []*record, p *partition) []*record {
	kept := recs[:0]
	for _, r := range recs {
		if r.part != p {
			kept = append(kept, r)
		}
	}
	clear(recs[len(kept):])
	return kept
}

func newScheduler(cfg Module) scheduler {
	if cfg.Dispatch == dispatchIdleWorker {
		return newKeyLanes(cfg)
	}
	return newHashQueues(cfg)
}

// keyed says whether r's key orders it ("serialize_by_key").
func keyed(cfg Module, r *record) bool { return len(r.msg.Key) > 0 && cfg.serializeByKey() }

// hashQueues is "dispatch: hash", DESIGN's rule: a record goes to worker
// hash(key) % worker_num; records without a key go to any idle worker.
//
// put never blocks: it runs in the module's one poll goroutine, which must
// stay free to apply claims and releases while a worker is stuck on a
// failing key. The window bounds what waits in the queues (the poll loop
// takes no more records than the window has free slots).
type hashQueues struct {
	cfg Module

	mu      sync.Mutex
	own     [][]*record // per worker: its keys' records in offset order
	shared  []*record   // records without a key, for any idle worker
	closing bool

	wake       []chan struct{} // per worker (cap 1): its queue has records, or closing
	sharedWake chan struct{}   // (cap worker_num) the shared queue has records
}

func newHashQueues(cfg Module) *hashQueues {
	q := &hashQueues{cfg: cfg, own: make([][]*record, cfg.WorkerNum), sharedWake: make(chan struct{}, cfg.WorkerNum)}
	for range cfg.WorkerNum {
		q.wake = append(q.wake, make(chan struct{}, 1))
	}
	return q
}

func (q *hashQueues) put(_ context.Context, r *record) bool {
	q.mu.Lock()
	if !keyed(q.cfg, r) {
		q.shared = append(q.shared, r)
		q.mu.Unlock()
		signal(q.sharedWake)
		return true
	}
	h := fnv.New32a()
	h.Write(r.msg.Key)
	i := h.Sum32() % uint32(len(q.own))
	q.own[i] = append(q.own[i], r)
	q.mu.Unlock()
	signal(q.wake[i])
	return true
}

// signal leaves a token in c unless it holds as many as it can.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (q *hashQueues) work(i int, push func(*record)) {
	for {
		q.mu.Lock()
		var r *record
		switch {
		case len(q.own[i]) > 0:
			r = q.own[i][0]
			q.own[i][0] = nil
			q.own[i] = q.own[i][1:]
			if len(q.shared) > 0 {
				// This worker may have been woken for a keyless record it
				// leaves: pass the wake-up on to an idle worker.
				signal(q.sharedWake)
			}
		case len(q.shared) > 0:
			r = q.shared[0]
			q.shared[0] = nil
			q.shared = q.shared[1:]
			if len(q.shared) > 0 {
				signal(q.sharedWake) // more for the next idle worker
			}
		case q.closing:
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		if r != nil {
			push(r)
			continue
		}
		select {
		case <-q.wake[i]:
		case <-q.sharedWake:
		}
	}
}

// close wakes every worker; each ends once its queue and the shared one
// are empty. The wake channels stay open: a worker taking a shared record
// after close still signals sharedWake.
func (q *hashQueues) close() {
	q.mu.Lock()
	q.closing = true
	q.mu.Unlock()
	for _, c := range q.wake {
		signal(c)
	}
}

func (q *hashQueues) drop(p *partition) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range q.own {
		q.own[i] = without(q.own[i], p)
	}
	q.shared = without(q.shared, p)
}

// keyLanes is "dispatch: idle_worker": every key with records not yet
// pushed has a lane, its records in offset order. A lane is held by at
// most one worker at a time, which pushes its records until it is empty;
// a new lane goes to whichever worker is idle first. With hash dispatch
// two busy keys that hash alike wait for each other while other workers
// idle; here a key waits only for its own records.
//
// put never blocks (see hashQueues): a new lane is handed to an idle
// worker directly, on that worker's own channel, or waits in a queue for
// the next worker to finish. A worker is woken only with a lane to push.
type keyLanes struct {
	cfg Module

	mu      sync.Mutex
	ready   []*lane          // lanes no worker holds yet
	idle    []chan laneStart // workers waiting for a lane (each channel cap 1)
	byKey   map[string]*lane
	free    []*lane // emptied lanes, reused (at most window_size)
	live    int     // lanes not yet emptied
	closing bool
	ended   bool // the workers end once no lane is ready
}

type lane struct {
	key  string    // "" for a record without a key: a lane of its own
	recs []*record // recs[head:] are waiting; kept for reuse once emptied
	head int
}

// maxReusedLane is the longest record array an emptied lane keeps.
const maxReusedLane = 16

// newLane is an empty lane for key, a reused one when there is one. k.mu
// is held.
func (k *keyLanes) newLane(key string) *lane {
	n := len(k.free)
	if n == 0 {
		return &lane{key: key}
	}
	l := k.free[n-1]
	k.free[n-1] = nil
	k.free = k.free[:n-1]
	l.key = key
	return l
}

// laneStart hands a lane and its first record to a worker; a zero one
// ends the worker.
type laneStart struct {
	l *lane
	r *record
}

func newKeyLanes(cfg Module) *keyLanes {
	return &keyLanes{cfg: cfg, byKey: map[string]*lane{}}
}

func (k *keyLanes) put(_ context.Context, r *record) bool {
	k.mu.Lock()
	var l *lane
	if keyed(k.cfg, r) {
		if l = k.byKey[string(r.msg.Key)]; l != nil {
			if len(l.recs) == cap(l.recs) && l.head > 0 {
				// A busy key's lane may never empty: the slots of the
				// records already pushed are reused, or its array would
				// grow by one per record for as long as the key is busy.
				n := copy(l.recs, l.recs[l.head:])
				clear(l.recs[n:])
				l.recs, l.head = l.recs[:n], 0
			}
			l.recs = append(l.recs, r) // its worker takes it after the ones before
			k.mu.Unlock()
			return true
		}
		l = k.newLane(string(r.msg.Key))
		k.byKey[l.key] = l
	} else {
		l = k.newLane("")
	}
	l.recs = append(l.recs, r)
	k.live++
	if n := len(k.idle); n > 0 {
		c := k.idle[n-1] // the worker idle last: its stack is still warm
		k.idle[n-1] = nil
		k.idle = k.idle[:n-1]
		k.mu.Unlock()
		c <- laneStart{l, r} // the worker waits on it alone: never blocks
		return true
	}
	k.ready = append(k.ready, l)
	k.mu.Unlock()
	return true
}

// next takes a ready lane and its first record, waiting on wake for one;
// a nil lane when the workers end.
func (k *keyLanes) next(wake chan laneStart) (*lane, *record) {
	k.mu.Lock()
	if len(k.ready) > 0 {
		l := k.ready[0]
		k.ready[0] = nil
		k.ready = k.ready[1:]
		r := l.recs[l.head]
		k.mu.Unlock()
		return l, r
	}
	if k.ended {
		k.mu.Unlock()
		return nil, nil
	}
	k.idle = append(k.idle, wake)
	k.mu.Unlock()
	s := <-wake
	return s.l, s.r
}

func (k *keyLanes) work(_ int, push func(*record)) {
	wake := make(chan laneStart, 1)
	for l, r := k.next(wake); l != nil; l, r = k.next(wake) {
		for r != nil {
			push(r)
			k.mu.Lock()
			l.recs[l.head] = nil
			l.head++
			r = nil
			if l.head < len(l.recs) {
				r = l.recs[l.head]
			} else {
				k.finish(l)
			}
			k.mu.Unlock()
		}
	}
}

// finish forgets an emptied lane, kept for reuse (the worker that held it
// does not touch it again); the last one after close ends the workers.
// k.mu is held.
func (k *keyLanes) finish(l *lane) {
	if l.key != "" {
		delete(k.byKey, l.key)
	}
	l.key, l.recs, l.head = "", l.recs[:0], 0
	if cap(l.recs) > maxReusedLane {
		l.recs = nil // a busy key's long array is not kept for every key
	}
	if len(k.free) < k.cfg.WindowSize { // no more lanes than records in the window
		k.free = append(k.free, l)
	}
	k.live--
	k.maybeEnd()
}

// maybeEnd ends the workers once close was called and every lane is
// emptied: the idle ones are woken with nothing, the others find ended.
// k.mu is held.
func (k *keyLanes) maybeEnd() {
	if k.live == 0 && k.closing && !k.ended {
		k.ended = true
		for _, c := range k.idle {
			c <- laneStart{} // cap 1 and empty: the worker waits on it
		}
		k.idle = nil
	}
}

// drop empties the lanes no worker holds of p's records (finishing those
// left empty), and the held ones but for the record being pushed.
func (k *keyLanes) drop(p *partition) {
	k.mu.Lock()
	defer k.mu.Unlock()
	waiting := make(map[*lane]bool, len(k.ready))
	ready := k.ready[:0]
	for _, l := range k.ready {
		waiting[l] = true
		l.recs = append(l.recs[:l.head], without(l.recs[l.head:], p)...)
		if l.head == len(l.recs) {
			k.finish(l)
			continue
		}
		ready = append(ready, l)
	}
	clear(k.ready[len(ready):])
	k.ready = ready
	for _, l := range k.byKey {
		if !waiting[l] && l.head < len(l.recs) {
			l.recs = append(l.recs[:l.head+1], without(l.recs[l.head+1:], p)...)
		}
	}
}

func (k *keyLanes) close() {
	k.mu.Lock()
	k.closing = true
	k.maybeEnd()
	k.mu.Unlock()
}
