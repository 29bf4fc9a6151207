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
type hashQueues struct {
	cfg    Module
	queues []chan *record // one per worker: its keys' records in offset order
	shared chan *record   // records without a key, for any idle worker
}

func newHashQueues(cfg Module) *hashQueues {
	q := &hashQueues{cfg: cfg, shared: make(chan *record, cfg.WindowSize)}
	size := cfg.WaitingQueueSize
	if size == 0 || size > cfg.WindowSize {
		size = cfg.WindowSize // the window bounds what can wait in all queues together
	}
	for range cfg.WorkerNum {
		q.queues = append(q.queues, make(chan *record, size))
	}
	return q
}

func (q *hashQueues) put(ctx context.Context, r *record) bool {
	c := q.shared
	if keyed(q.cfg, r) {
		h := fnv.New32a()
		h.Write(r.msg.Key)
		c = q.queues[h.Sum32()%uint32(len(q.queues))]
	}
	select {
	case c <- r:
		return true
	case <-ctx.Done():
		return false
	}
}

func (q *hashQueues) work(i int, push func(*record)) {
	own, shared := q.queues[i], q.shared
	for own != nil || shared != nil {
		var r *record
		var ok bool
		select {
		case r, ok = <-own:
			if !ok {
				own = nil
				continue
			}
		case r, ok = <-shared:
			if !ok {
				shared = nil
				continue
			}
		}
		push(r)
	}
}

func (q *hashQueues) close() {
	for _, c := range q.queues {
		close(c)
	}
	close(q.shared)
}

// keyLanes is "dispatch: idle_worker": every key with records not yet
// pushed has a lane, its records in offset order. A lane is held by at
// most one worker at a time, which pushes its records until it is empty;
// a new lane goes to whichever worker is idle first. With hash dispatch
// two busy keys that hash alike wait for each other while other workers
// idle; here a key waits only for its own records.
type keyLanes struct {
	cfg   Module
	ready chan *lane // lanes no worker holds yet

	mu      sync.Mutex
	byKey   map[string]*lane
	live    int // lanes not yet emptied
	closing bool
}

type lane struct {
	key  string // "" for a record without a key: a lane of its own
	recs []*record
}

func newKeyLanes(cfg Module) *keyLanes {
	// A lane holds at least one record of the window, so at most
	// window_size lanes exist and a send to ready never blocks.
	return &keyLanes{cfg: cfg, ready: make(chan *lane, cfg.WindowSize), byKey: map[string]*lane{}}
}

func (k *keyLanes) put(_ context.Context, r *record) bool {
	k.mu.Lock()
	var l *lane
	if keyed(k.cfg, r) {
		if l = k.byKey[string(r.msg.Key)]; l != nil {
			l.recs = append(l.recs, r) // its worker takes it after the ones before
			k.mu.Unlock()
			return true
		}
		l = &lane{key: string(r.msg.Key)}
		k.byKey[l.key] = l
	} else {
		l = &lane{}
	}
	l.recs = append(l.recs, r)
	k.live++
	k.mu.Unlock()
	k.ready <- l
	return true
}

func (k *keyLanes) work(_ int, push func(*record)) {
	for l := range k.ready {
		k.mu.Lock()
		r := l.recs[0]
		k.mu.Unlock()
		for r != nil {
			push(r)
			k.mu.Lock()
			l.recs[0] = nil
			l.recs = l.recs[1:]
			r = nil
			if len(l.recs) > 0 {
				r = l.recs[0]
			} else {
				k.finish(l)
			}
			k.mu.Unlock()
		}
	}
}

// finish forgets an emptied lane; the last one after close ends the
// workers. k.mu is held.
func (k *keyLanes) finish(l *lane) {
	if l.key != "" {
		delete(k.byKey, l.key)
	}
	k.live--
	if k.live == 0 && k.closing {
		close(k.ready)
	}
}

func (k *keyLanes) close() {
	k.mu.Lock()
	k.closing = true
	if k.live == 0 {
		close(k.ready)
	}
	k.mu.Unlock()
}
