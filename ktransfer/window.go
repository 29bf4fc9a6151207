package ktransfer

import "sync"

// tracker follows one partition's records from dispatch to commit.
// Records are dispatched in offset order and acknowledged in any order;
// the offset to commit is the first one not yet acknowledged (or, when all
// are, the one after the last dispatched): Kafka 0.8's "next offset to
// consume".
type tracker struct {
	mu        sync.Mutex
	offsets   []int64 // dispatched, not yet below the frontier, increasing
	done      []bool
	head      int   // offsets[head:] are live
	committed int64 // the commit point: stored in ZooKeeper, or passed without a store (records before a restart's stored offset)
	frontier  int64 // every record below it is acknowledged
	ready     int   // records below the frontier and not yet committed
	inFlight  int   // dispatched and not acknowledged
	dropped   bool  // the partition was released: acknowledgements count no more
}

func newTracker(start int64) *tracker {
	return &tracker{committed: start, frontier: start}
}

// dispatch records that offset was handed to a worker.
func (t *tracker) dispatch(offset int64) {
	t.mu.Lock()
	if t.head == len(t.offsets) { // empty: the frontier waits at this record
		t.frontier = offset
	}
	t.offsets = append(t.offsets, offset)
	t.done = append(t.done, false)
	t.inFlight++
	t.mu.Unlock()
}

// jump moves the frontier to offset when nothing is dispatched and not yet
// below it: reading restarts there (offset_out_of_range), and the records
// before it will not be read.
func (t *tracker) jump(offset int64) {
	t.mu.Lock()
	if t.head == len(t.offsets) {
		t.frontier = offset
	}
	t.mu.Unlock()
}

// ack records that offset is finished (pushed, skipped or given up on) and
// returns how many records moved below the frontier.
func (t *tracker) ack(offset int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.find(offset)
	if i < 0 || t.done[i] {
		return 0
	}
	t.done[i] = true
	t.inFlight--
	if t.dropped {
		return 0 // its slots were freed and the module's count corrected at the release
	}
	moved := 0
	for t.head < len(t.offsets) && t.done[t.head] {
		t.frontier = t.offsets[t.head] + 1
		t.head++
		moved++
	}
	t.ready += moved
	if t.head > 1024 && t.head*2 > len(t.offsets) { // compact
		n := copy(t.offsets, t.offsets[t.head:])
		copy(t.done, t.done[t.head:])
		t.offsets, t.done, t.head = t.offsets[:n], t.done[:n], 0
	}
	return moved
}

// find returns the index of offset among the live ones, or -1.
func (t *tracker) find(offset int64) int {
	lo, hi := t.head, len(t.offsets)
	for lo < hi {
		mid := (lo + hi) / 2
		if t.offsets[mid] < offset {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(t.offsets) && t.offsets[lo] == offset {
		return lo
	}
	return -1
}

// toCommit returns the offset to store and how many records it covers,
// when it is ahead of the stored one.
func (t *tracker) toCommit() (offset int64, records int, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.frontier == t.committed && t.ready == 0 { // (below it only after a jump back: offset_out_of_range)
		return 0, 0, false
	}
	return t.frontier, t.ready, true
}

// committedAt records that offset, covering records, is stored.
func (t *tracker) committedAt(offset int64, records int) {
	t.mu.Lock()
	t.committed = offset
	t.ready -= records
	t.mu.Unlock()
}

// drop ends the accounting of a released partition. It returns the slots
// its records hold — every record dispatched and not committed: in flight,
// acknowledged above the frontier (behind a slower one), and acknowledged
// below it — and how many of them are acknowledged below the frontier
// (the module's count of records waiting for a commit). Acknowledgements
// after it move nothing.
func (t *tracker) drop() (held, ready int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropped = true
	return len(t.offsets) - t.head + t.ready, t.ready
}

// settled reports whether every dispatched record is acknowledged and
// committed: nothing of the partition holds a slot.
func (t *tracker) settled() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.head == len(t.offsets) && t.ready == 0
}

// snapshot is the tracker's state for /status.
func (t *tracker) snapshot() (committed, frontier int64, inFlight, ready int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.committed, t.frontier, t.inFlight, t.ready
}
