package ktransfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// partition is one partition of a module's topic held by this process. It
// can be started and stopped on its own (the fleet moves partitions
// between processes); the module's reader reads it.
type partition struct {
	m       *module
	id      int32
	log     *slog.Logger
	ctx     context.Context // the claim's: done once the partition is released
	tracker *tracker
	hwGauge interface{ Set(float64) } // ktransfer_high_water_offset; set when the claim is recorded (under m.mu)

	highWater atomic.Int64 // the log end last noted (a fetch's, or followLogEnds'); -1 before one
	hwAt      atomic.Int64 // when highWater was last noted (monoNow); 0: never

	// stored is the offset this claim last stored in ZooKeeper (its
	// start, a restart's offset, a commit): what /status and
	// ktransfer_committed_offset report, and the lag counts from. The
	// tracker's commit point is not it while a restart waits for the
	// records dispatched before it: their commits store nothing.
	stored atomic.Int64

	// outOfRange receives, from the reader, the offset it was fetching
	// from when the broker answered OFFSET_OUT_OF_RANGE.
	outOfRange chan int64

	// Owned by the reader's goroutine.
	next      int64 // the next offset to dispatch
	stalled   bool  // out of range was reported; waiting for a new start
	readEpoch int32 // the leader epoch of the last record read, -1: none since the partition was assigned

	// lostTo is the lowest new log end kgo reported (ErrDataLoss) while
	// the partition was stalled, -1 when none: set by the reader, taken
	// by run's goroutine, which restarts there rather than at the offset
	// of the restart under way (or by the reader once that restart is
	// applied, when it came too late for it).
	lostTo atomic.Int64

	// Owned by run's goroutine: OFFSET_OUT_OF_RANGE answers for an offset
	// Kafka has, in a row, and when the last one came (applyOutOfRange).
	passingOOR   int
	passingOORAt time.Time

	// recreated is set by the reader before it sends an offset on
	// outOfRange because the topic was deleted and created again.
	recreated atomic.Bool
	// truncated is set by the reader before it sends an offset on
	// outOfRange because the log now ends there, below what was read
	// (kgo's ErrDataLoss): the partition restarts there, no policy applies.
	truncated atomic.Bool
	// deletedTopic is set, under the module's commitMu, once the restart
	// offset in the new topic (or after a truncated log, or an offset
	// Kafka no longer has) is stored while records of the deleted topic
	// (or lost log, or from below the restart) are still in the window:
	// their commits free their slots but store nothing (the offset stored
	// names the records read next).
	deletedTopic bool
	// newTopicStored is set with deletedTopic when the offset stored is
	// the start in a topic created again (not a truncated log's end, nor
	// the offset offset_out_of_range chose).
	newTopicStored bool
	// pendingStart is set, under the module's commitMu, while a restart
	// offset is being stored (storeNewTopicStart) and not stored yet: its
	// write failed, or got no answer, and is tried again. Commits store
	// nothing meanwhile, as with deletedTopic, which takes over once it is
	// stored: a commit of the records dispatched before the restart would
	// write their offset (below the log start, of a deleted topic, above
	// the log end) over the restart offset's write, applied without an
	// answer. A hand-over tries it again (handOverPendingStart). Cleared
	// once stored, or when the claim is found deposed.
	pendingStart *pendingStart

	released atomic.Bool  // given up: queued records are dropped, not pushed
	pushing  atomic.Int32 // pushes of its records in progress
	// abandoned is closed when the release gives up waiting for the
	// pushes in progress (at shutdown_timeout_ms on a hand-over, at once
	// on a drop): a dead-letter write still waiting for Kafka stops
	// waiting then, its record uncommitted (deadLetter). nil: never.
	abandoned   chan struct{}
	abandonOnce sync.Once

	// The claim, for fencing: the owner node, its creation zxid (the
	// epoch every push carries) and version, and the version of the
	// partition's offset node as this claim last wrote it (under the
	// module's commitMu once the partition started). A commit checks both
	// in one multi-op: after another process claimed the partition and
	// stored its start offset, this claim's commits fail.
	owner         string
	session       int64 // the ZooKeeper session the owner node belongs to
	epoch         int64
	ownerVersion  int32
	offsetVersion int32
	// unsure is set when a commit got no answer (the connection broke):
	// it may have been applied. The next commit reads the node first.
	unsure      bool
	unsureValue int64
}

// pendingStart is what storeNewTopicStart was asked to store.
type pendingStart struct {
	next     int64
	lower    bool
	logStart int64
	newTopic bool
}

// abandonWrites ends the waits of the dead-letter writes of p's records
// (abandoned); idempotent.
func (p *partition) abandonWrites() {
	if p.abandoned != nil {
		p.abandonOnce.Do(func() { close(p.abandoned) })
	}
}

// errDeposed: a fenced write found the partition no longer this claim's.
var errDeposed = errors.New("partition deposed")

func newPartition(m *module, id int32, ctx context.Context) *partition {
	p := &partition{m: m, id: id, log: m.log.With("partition", id), ctx: ctx, outOfRange: make(chan int64, 1),
		abandoned: make(chan struct{})}
	p.highWater.Store(-1)
	p.lostTo.Store(-1)
	return p
}

// run reads the partition from its committed offset until ctx ends or the
// partition cannot go on. When it returns, none of the partition's records
// is dispatched any more.
func (p *partition) run(ctx context.Context) error {
	m := p.m
	start, err := p.begin(ctx)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, errDeposed) {
			return nil // released while starting: not a failure
		}
		return err
	}
	p.storedAt(start) // begin stored it
	m.mu.Lock()       // the committer and /status read it
	p.tracker = newTracker(start)
	m.mu.Unlock()
	p.log.Info("partition started", "offset", start)
	m.reader.assign(p, start)
	defer m.reader.unassign(p)
	for {
		select {
		case <-ctx.Done():
			return nil
		case at := <-p.outOfRange:
			next, passing, err := p.restart(ctx, at)
			if err != nil {
				if ctx.Err() != nil && !errors.Is(err, errDeposed) {
					return nil
				}
				return err
			}
			if ctx.Err() != nil {
				return nil // released as the restart ended: nothing to read
			}
			if passing {
				m.reader.readOn(p, next)
			} else {
				m.reader.assign(p, next)
			}
		}
	}
}

// restart finds where the partition reads on after the reader stalled it
// at offset at (an out-of-range answer, a truncated log, the client going
// back, the topic created again), stores it, and returns it once every
// record dispatched before is done; a passing answer (Kafka has at) reads
// on from at at once (passing), with the leader epoch of the last record
// read, so that a leader found to end its log below at (an unclean
// election) is told by the Kafka client as it would have been had the
// answer not come. A topic found created again while it
// waits (the reader marks a stalled partition recreated) restarts it as
// such: the offset taken was one of the deleted topic.
//
// The offset is stored at once (storeNewTopicStart), before the records
// dispatched before are done, unless the answer was a passing one (Kafka
// has at: nothing to store). A process stopping meanwhile would otherwise
// leave the committed offset to the next owner; for an offset Kafka no
// longer has, the next owner found it out of range again and applied
// offset_out_of_range anew, later (under newest, skipping every record
// written in between). Below the log start, the records dispatched (below
// at) are no longer in Kafka either: next is stored. Above the log end
// (the log ends below what was read), the lower of next and the committed
// offset is, as for a truncated log: records dispatched below next are
// still in Kafka.
func (p *partition) restart(ctx context.Context, at int64) (next int64, passing bool, err error) {
	truncated := p.truncated.Swap(false)
	for {
		recreated := p.recreated.Load()
		if recreated {
			// The new topic is another log: a truncation of the deleted
			// one says nothing of it.
			truncated = false
			p.lostTo.Store(-1)
		}
		next, err = at, nil
		belowStart := false   // every record dispatched is below the log start
		logStart := int64(-1) // unknown
		if !truncated {
			next, logStart, err = p.applyOutOfRange(ctx, at, recreated)
			if err == nil && !recreated {
				belowStart, truncated = next > at, next < at
			}
		}
		for err == nil {
			if lost := p.lostTo.Swap(-1); lost >= 0 && lost < next {
				// The log ends below: the lower wins. The log start read
				// before (applyOutOfRange) may be stale by now: retention
				// goes on while a record is retried. It is asked again.
				next, truncated, logStart = lost, true, -1
			}
			if !recreated && !truncated && !belowStart {
				// A passing answer (Kafka has at): the partition reads
				// on from at at once. Nothing moves, so the records
				// dispatched before finish and are committed as they
				// would have been; waiting for them held every key of
				// the partition behind one retried record.
				return next, true, nil
			}
			err = p.storeNewTopicStart(ctx, next, truncated && !belowStart, logStart, recreated)
			if err == nil {
				err = p.restartAt(ctx, next, recreated)
			}
			if !errors.Is(err, errLostBelow) {
				break
			}
			err = nil
		}
		if !errors.Is(err, errRecreated) {
			return next, false, err
		}
	}
}

// noteLogEnd records the partition's log end for /status and
// ktransfer_high_water_offset, as Kafka answered it when asked at (monoNow).
func (p *partition) noteLogEnd(end, at int64) {
	p.highWater.Store(end)
	p.hwGauge.Set(float64(end))
	p.hwAt.Store(at)
}

// noteFetchedLogEnd records the log end a fetch reported, unless it is
// below the one recorded: records the Kafka client buffered, returned
// after the log end was asked (followLogEnds), carry their older fetch's.
// A lower one is left to followLogEnds to confirm (a truncated log, a
// topic created again), within a second or two: it is not noted as fresh.
func (p *partition) noteFetchedLogEnd(end int64) {
	if end < p.highWater.Load() {
		return
	}
	p.noteLogEnd(end, monoNow())
}

// logEndEvery is how often the log end of a partition no fetch reports is
// asked of Kafka.
const logEndEvery = time.Second

// followLogEnds asks Kafka, every logEndEvery until ctx ends, for the log
// ends of the partitions held whose log end no fetch reported for that
// long. The reader fetches nothing of a partition while the window is
// full, nor of one stalled while it restarts (a restart can wait long for
// a record dispatched before it, retried against a backend that is
// down), and a fetch that returns no record reports no log end: the log
// end of the last fetch (or none: 0 for a partition idle since its claim)
// showed a lag of 0 while the records written meanwhile waited.
func (m *module) followLogEnds(ctx context.Context) {
	t := time.NewTicker(logEndEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		asked := monoNow()
		var stale []*partition
		m.mu.Lock()
		for _, p := range m.parts {
			// Half the period: an answer noted at the last tick's asking
			// is a period old at this one, give or take the ticker's jitter.
			if p.tracker != nil && p.ctx.Err() == nil && asked-p.hwAt.Load() >= int64(logEndEvery/2) {
				stale = append(stale, p)
			}
		}
		m.mu.Unlock()
		if len(stale) == 0 {
			continue
		}
		// Asked once each time, without retries (and their metadata
		// refreshes): the next tick asks again.
		ask, done := context.WithTimeout(ctx, logEndEvery)
		// The high watermark, as fetches report it.
		listed, err := m.t.adm.ListEndOffsets(ask, m.cfg.Topic)
		done()
		if err != nil {
			continue
		}
		for _, p := range stale {
			// Not over a fetch's report that came meanwhile: it is newer.
			if o, ok := listed.Lookup(m.cfg.Topic, p.id); ok && o.Err == nil && p.hwAt.Load() < asked {
				p.noteLogEnd(o.Offset, asked)
			}
		}
	}
}

// begin finds and stores the partition's start offset, retrying with a
// backoff until it succeeds or the claim ends: a leader election or a
// ZooKeeper blip delays a partition, it never stops the module.
func (p *partition) begin(ctx context.Context) (int64, error) {
	for n := 1; ; n++ {
		start, err := p.startOffset(ctx)
		if err == nil || errors.Is(err, errDeposed) {
			return start, err
		}
		wait := backoff(n, 100*time.Millisecond, 5*time.Second)
		p.log.Warn("partition start failed; retrying", "err", err, "attempt", n, "wait", wait)
		if !sleep(ctx, wait) {
			return 0, ctx.Err()
		}
	}
}

// startOffset is the stored offset, or where start_from says when none is
// stored. Either way it is stored again before the first push, fenced:
// this claim's write moves the offset node's version, so a process that
// held the partition before can no longer commit, and a resolved offset
// is where the next owner starts even if this one stops at once.
//
// The write checks the offset node's version as the claim left it
// (offsetVersion, from takeOwner), not as read here: a node written since
// (by a later claim, its owner node at version 0 as this one's; by hand)
// means the partition is no longer this claim's, and it is deposed. A
// process resumed after a pause that expired its session, while its
// claim was starting, would otherwise store its start under the next
// owner's claim, whose next commit would be refused.
//
// A partition without an offset node (its first start) has no version to
// tell the claims apart: no claim rewrites a node that is not there, and
// each expects none. Its owner node is read (synced) just before the
// create, once the start is resolved: it must be this claim's (this
// instance's id, the claim's epoch), else the claim is deposed. That
// fences a process whose session expired before the read. It leaves one
// window: a process that pauses between that read and the create, past
// its session timeout, while the next claim is made, creates the node
// under that claim, whose start is then refused (it is released and
// claimed again) while this one pushes until it finds its session lost
// or the owner node another claim's.
// Checking the owners folder's version in the create would close it, but
// every claim of the module moves that version: on a first deploy the
// starts failed for seconds while the other partitions were claimed. A
// per-partition claim node would close it; not built (it changes the
// ZooKeeper layout).
func (p *partition) startOffset(ctx context.Context) (int64, error) {
	m := p.m
	if p.unsure && !m.t.settle(p) { // a write of an earlier try got no answer: was it applied?
		return 0, errUnsettled
	}
	start, version, err := m.t.loadOffset(m.cfg.Name, m.cfg.Topic, p.id)
	if err != nil {
		return 0, err
	}
	if version != p.offsetVersion {
		return 0, fmt.Errorf("%w: offset node written since the claim (version %d, the claim's %d)", errDeposed, version, p.offsetVersion)
	}
	if version < 0 {
		if start, err = p.resolve(ctx, m.cfg.StartFrom); err != nil {
			return 0, err
		}
		late := m.cfg.StartFrom == "newest" && m.topicLate.Load() != 0 && !p.startedBefore()
		if late {
			if late, err = p.noOffsetDeleted(); err != nil {
				return 0, err
			}
		}
		switch {
		case late:
			// The topic was created after this run of the module
			// started waiting for it: its records came since. Not for
			// a partition started before in this run, nor once an
			// offset node of the topic was deleted: an operator's way to
			// start a partition again at the newest record
			// (sinceModuleStart).
			if start, err = p.firstSince(ctx, m.topicLate.Load(), start,
				"the topic was created after the module started waiting for it: start_from newest starts at its first record since"); err != nil {
				return 0, err
			}
		case m.cfg.StartFrom == "newest":
			if start, err = p.sinceModuleStart(ctx, start); err != nil {
				return 0, err
			}
		}
		data, stat, err := syncedGet(m.t.conn(), p.owner)
		switch {
		case errors.Is(err, zk.ErrNoNode), err == nil && (string(data) != m.t.id || stat.Czxid != p.epoch):
			return 0, fmt.Errorf("%w: owner node gone or another claim's", errDeposed)
		case err != nil:
			return 0, err
		}
		p.log.Info("no stored offset; starting", "start_from", m.cfg.StartFrom, "offset", start)
		if f := beforeStartWrite.Load(); f != nil {
			(*f)()
		}
	}
	err = m.t.storeFenced([]*partition{p}, []int64{start}, []int32{version})
	if errors.Is(err, errOffsetMoved) {
		return 0, fmt.Errorf("%w: %w", errDeposed, err) // written between the read and the write
	}
	if err == nil {
		m.started.Store(p.id, true)
	}
	if err == nil && !p.recordPartitions() {
		go p.retryRecordPartitions(ctx)
	}
	return start, err
}

// noOffsetDeleted reports whether no offset node of the module's topic
// was ever deleted, by any process of the fleet or an operator: the
// children of the offsets/<topic> node changed only by creates, one at
// each partition's first start (ktransfer deletes none). A partition
// without an offset node once one was deleted may be that one, started
// and pushed before.
func (p *partition) noOffsetDeleted() (bool, error) {
	dir := zklayout.Offsets(p.m.t.cfg.ZKChroot, p.m.cfg.Name, p.m.cfg.Topic)
	ok, stat, err := p.m.t.conn().Exists(dir)
	switch {
	case err != nil:
		return false, fmt.Errorf("read %s: %w", dir, err)
	case !ok:
		return true, nil
	}
	return stat.Cversion <= stat.NumChildren, nil
}

// startedBefore reports whether the module's run started the partition
// before (startOffset).
func (p *partition) startedBefore() bool {
	_, ok := p.m.started.Load(p.id)
	return ok
}

// storedAt records that offset is stored in ZooKeeper as p's next offset
// to push. Before the claim's release forgets p's series (under the
// module's commitMu, or from run's goroutine, which has returned by
// then): a store after it would bring them back.
func (p *partition) storedAt(offset int64) {
	p.stored.Store(offset)
	p.m.stats.committed(p.id, offset)
}

// beforeStartWrite, when a test sets it, runs between a first start's
// read of its owner node and its create of the offset node.
var beforeStartWrite atomic.Pointer[func()]

// recordPartitions keeps the partition count of the module's
// offsets/<topic> node (sinceModuleStart) after this claim stored the
// partition's start.
//
// It moves the count past the added partitions that have a stored offset
// now, as far as they follow each other from the count: an operator who
// deletes the offset node of one of them later has it start again at the
// newest record, as for the topic's first partitions, while an added
// partition not started yet stays above the count. Any claim of a
// partition at or above the count does it, not only the partition's
// first.
//
// A node written by an older ktransfer records no count: it is written
// once every partition of the list this process first read has a stored
// offset (those are no added partitions, whatever becomes of their offset
// nodes later; the partitions beyond were added while this process ran).
//
// A write of the count by another process meanwhile (the version moved)
// is read again: its count may stop below this partition, whose offset it
// did not see yet. It reports false when ZooKeeper failed it (the rule
// stays as it was meanwhile): the claim tries again
// (retryRecordPartitions).
func (p *partition) recordPartitions() bool {
	m := p.m
	conn := m.t.conn()
	dir := zklayout.Offsets(m.t.cfg.ZKChroot, m.cfg.Name, m.cfg.Topic)
	for range 5 {
		data, stat, err := conn.Get(dir)
		if err != nil {
			return false
		}
		n, ok := zklayout.ParseOffsetsTopic(data)
		if ok && p.id < n {
			return true
		}
		if !ok {
			if n = m.t.firstPartitionCount(m.cfg.Topic); n == 0 {
				return true
			}
		}
		names, _, err := conn.Children(dir)
		if err != nil {
			return false
		}
		stored := make(map[int32]bool, len(names))
		for _, name := range names {
			if id, ok := zklayout.Partition(name); ok {
				stored[id] = true
			}
		}
		if !ok {
			for id := range n {
				if !stored[id] {
					return true
				}
			}
		}
		k := n
		for stored[k] {
			k++
		}
		if ok && k == n {
			return true
		}
		if f := beforeCountWrite.Load(); f != nil {
			(*f)(p)
		}
		_, err = conn.Set(dir, zklayout.EncodeOffsetsTopic(k), stat.Version)
		if errors.Is(err, zk.ErrBadVersion) {
			continue // written by another process meanwhile: read again
		}
		if err != nil {
			p.log.Warn("recording the topic's partitions failed", "dir", dir, "partitions", k, "err", err)
		}
		return err == nil
	}
	return false
}

// retryRecordPartitions makes recordPartitions again, with a backoff,
// until it succeeds or the claim ends: the partition may stay with this
// claim for good, and the count must not stay below it because ZooKeeper
// failed its write once.
func (p *partition) retryRecordPartitions(ctx context.Context) {
	for n := 1; sleep(ctx, backoff(n, time.Second, time.Minute)); n++ {
		if p.recordPartitions() {
			return
		}
	}
}

// beforeCountWrite, when a test sets it, runs between the listing of the
// offsets recordPartitions moves the partition count past and its write.
var beforeCountWrite atomic.Pointer[func(*partition)]

// sinceModuleStart is where a partition without a stored offset starts
// under start_from: newest, given its newest offset. start_from decides
// where the module begins on a topic, not what it skips later: a
// partition added to the topic after the module first stored offsets of
// it is found some seconds after it is created, by whichever process of
// the fleet takes it, and the records written to it meanwhile were
// skipped. Such a partition has an id at or above the partition count the
// module's offsets/<topic> node records (written with the node, moved on
// as added partitions get their offsets: recordPartitions); a node
// without one (written by an older ktransfer, until every partition this
// process first read has an offset) leaves the question to this process:
// a partition not in the list it first read was added while it ran. It
// starts at the first record written since the offsets node was
// created (the module's first stored offset; record timestamps against
// ZooKeeper's clock), or newest when that is earlier. Any other partition
// without a stored offset (one whose offset node an operator deleted to
// have it start at the newest record, one of the module's first start
// claimed after another) starts at the newest record, as start_from says:
// going back to the module's first start would push again what the
// module pushed long ago.
func (p *partition) sinceModuleStart(ctx context.Context, newest int64) (int64, error) {
	m := p.m
	dir := zklayout.Offsets(m.t.cfg.ZKChroot, m.cfg.Name, m.cfg.Topic)
	data, stat, err := m.t.conn().Get(dir)
	if errors.Is(err, zk.ErrNoNode) {
		return newest, nil // the module's first start on the topic
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", dir, err)
	}
	added := m.t.addedWhileRunning(m.cfg.Topic, p.id)
	if n, ok := zklayout.ParseOffsetsTopic(data); ok {
		added = p.id >= n // the fleet's record, whenever this process started
	}
	if !added {
		return newest, nil
	}
	return p.firstSince(ctx, stat.Ctime, newest,
		"partition without a stored offset on a topic the module already reads: start_from newest starts at its first record since the module started")
}

// firstSince is the partition's first record written at or after ms (Unix
// milliseconds against the records' timestamps), or newest when that is
// earlier or the brokers cannot list offsets by time; why is logged when
// it is not newest.
func (p *partition) firstSince(ctx context.Context, ms, newest int64, why string) (int64, error) {
	m := p.m
	since, err := p.listOffsetWith(ctx, func(ctx context.Context) (kadm.ListedOffsets, error) {
		return m.t.adm.ListOffsetsAfterMilli(ctx, ms, m.cfg.Topic)
	})
	switch {
	case err != nil && !kerr.IsRetriable(err):
		// Brokers that cannot list offsets by time: start_from as it says.
		p.log.Warn("offset since the module's start unknown; starting at the newest", "offset", newest, "since_ms", ms, "err", err)
		return newest, nil
	case err != nil:
		return 0, fmt.Errorf("offset of %s/%d since %d: %w", m.cfg.Topic, p.id, ms, err)
	}
	if since < newest {
		p.log.Info(why, "offset", since, "newest", newest, "since_ms", ms)
		return since, nil
	}
	return newest, nil
}

// storeNewTopicStart stores next, the partition's start in a topic
// deleted and created again, at once, without waiting for the records of
// the deleted topic still in the window (restartAt waits for them before
// reading on): the offset stored before names a record of the deleted
// topic, and a next owner (after a crash or a hand-over meanwhile) would
// read the new topic from there, skipping its first records. Those
// records cannot be read again after a crash anyway; their commits now
// store nothing (deletedTopic).
//
// The same holds after a truncated log (next is the new log end, below
// records dispatched): the records dispatched at and above it are no
// longer in Kafka, and the committed offset, or a commit of theirs, stored
// at a stop meanwhile made the next owner skip the records written at
// those offsets since. What is stored then (lower) is the lower of next
// and the committed offset: records dispatched below next are still in
// Kafka, and are read again after a crash. Not below logStart (the log
// start as read; -1 when unknown, and then asked here): a committed
// offset Kafka no longer has (a record retried until retention passed it)
// would have the next owner apply offset_out_of_range again, later; the
// log start is stored then.
//
// And after an offset Kafka no longer has, below its log start (next is
// where offset_out_of_range says): the records dispatched are below the
// log start, and the committed offset stored at a stop meanwhile had the
// next owner apply offset_out_of_range again, later.
//
// newTopic says next is a start in a topic created again
// (newTopicStored).
//
// Until it is stored, commits store nothing either (pendingStart): a
// write that failed, or got no answer, is tried again, and one applied
// without an answer must not be overwritten by a commit of the records
// dispatched before. When ctx ends first, the hand-over tries again
// (handOverPendingStart).
func (p *partition) storeNewTopicStart(ctx context.Context, next int64, lower bool, logStart int64, newTopic bool) error {
	m := p.m
	m.commitMu.Lock()
	p.pendingStart = &pendingStart{next: next, lower: lower, logStart: logStart, newTopic: newTopic}
	m.commitMu.Unlock()
	for n := 1; ; n++ {
		if lower && logStart < 0 {
			// A truncated log's restart (kgo's report) knows no log start;
			// it is asked when the committed offset would be stored.
			if committed, _, _, _ := p.tracker.snapshot(); committed < next {
				start, err := p.resolve(ctx, "oldest")
				switch {
				case err == nil:
					logStart = start
					m.commitMu.Lock()
					if p.pendingStart != nil {
						p.pendingStart.logStart = start
					}
					m.commitMu.Unlock()
				case ctx.Err() == nil:
					p.log.Warn("log start for the restart offset unknown; retrying", "offset", next, "err", err)
					if !sleep(ctx, backoff(min(n, 8), 20*time.Millisecond, time.Second)) {
						return ctx.Err()
					}
					continue
				default:
					// Out of time (a hand-over): the committed offset is
					// stored without the log start rather than nothing (the
					// offset in ZooKeeper may be older still).
					p.log.Warn("log start for the restart offset unknown; storing the committed offset", "offset", next, "err", err)
				}
			}
		}
		m.commitMu.Lock()
		err := errUnsettled
		if !p.unsure || m.t.settle(p) {
			at := next
			committed, _, _, _ := p.tracker.snapshot()
			if lower && committed < at {
				// Stored already, and no commit goes above it any more.
				at = max(committed, min(logStart, at))
			}
			err = m.t.storeFenced([]*partition{p}, []int64{at}, []int32{p.offsetVersion})
			switch {
			case err == nil && lower && committed < at && at < next:
				p.log.Warn("restart offset stored at the log start: records below it, dispatched before, are no longer in Kafka and are not pushed again after a stop",
					"committed", committed, "log_start", at, "restart_offset", next)
				fallthrough
			case err == nil:
				p.deletedTopic, p.newTopicStored = true, newTopic
				p.pendingStart = nil
				p.storedAt(at)
			case errors.Is(err, errDeposed), errors.Is(err, errOffsetMoved):
				p.pendingStart = nil
			}
		}
		m.commitMu.Unlock()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errDeposed), errors.Is(err, errOffsetMoved):
			return errDeposed
		}
		if lower {
			// Retention goes on while ZooKeeper is away: the log start is
			// asked again before the next try.
			logStart = -1
			m.commitMu.Lock()
			if p.pendingStart != nil {
				p.pendingStart.logStart = -1
			}
			m.commitMu.Unlock()
		}
		p.log.Warn("storing the restart offset failed; retrying", "offset", next, "err", err)
		if !sleep(ctx, backoff(min(n, 8), 20*time.Millisecond, time.Second)) {
			return ctx.Err()
		}
	}
}

// handOverPendingStart stores, at a hand-over, the restart offset
// storeNewTopicStart was storing when the claim was released (its write
// failed, or got no answer, and was not tried again): the commits of the
// records dispatched before store nothing, and the offset stored before
// the restart would be left to the next owner (below the log start: it
// applied offset_out_of_range again, later). It gives up after wait,
// logged: that offset is left then. The run goroutine has returned.
func (p *partition) handOverPendingStart(wait time.Duration) {
	m := p.m
	m.commitMu.Lock()
	s := p.pendingStart
	m.commitMu.Unlock()
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.storeNewTopicStart(ctx, s.next, s.lower, s.logStart, s.newTopic); err != nil {
		p.log.Error("storing the restart offset failed at the hand-over; the next owner reads from the offset stored before the restart", "offset", s.next, "err", err)
	}
}

// handOverNewTopicStart stores, at a hand-over, the partition's start in
// its topic found deleted and created again (recreated) when no restart
// stored it: the claim was being released when the reader found the topic
// so, or its restart had not stored it yet. The offset stored names a
// record of the deleted topic; the next owner, which never read that
// topic, would read the new one from there, skipping its first records.
// The start is where offset_out_of_range says; under stop nothing is
// stored (this claim cannot stop the module any more). It gives up after
// wait, logged: the next owner then reads from the deleted topic's offset.
// The run goroutine has returned.
func (p *partition) handOverNewTopicStart(wait time.Duration) {
	m := p.m
	m.commitMu.Lock()
	stored := p.newTopicStored
	m.commitMu.Unlock()
	if stored || !p.recreated.Load() {
		return
	}
	policy := m.cfg.OffsetOutOfRange
	if policy == "stop" {
		p.log.Error("topic created again found at the hand-over; offset_out_of_range is stop: the next owner reads the new topic from the deleted topic's offset")
		return
	}
	m.stats.outOfRange()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	next, err := p.resolve(ctx, policy)
	if err == nil {
		p.log.Error("topic created again found at the hand-over; storing its start", "offset", next, "offset_out_of_range", policy)
		err = p.storeNewTopicStart(ctx, next, false, -1, true)
	}
	if err != nil {
		p.log.Error("storing the start in the topic created again failed at the hand-over; the next owner reads it from the deleted topic's offset", "err", err)
	}
}

// errUnsettled: a commit got no answer and ZooKeeper does not answer yet.
var errUnsettled = errors.New("offset node unsure: ZooKeeper does not answer")

// errLostBelow: the log was found to end below the restart offset while
// the restart waited (lostTo).
var errLostBelow = errors.New("log truncated below the restart offset")

// errRecreated: the topic was found deleted and created again while the
// restart waited (recreated), the restart offset being one of the deleted
// topic.
var errRecreated = errors.New("topic created again during the restart")

// restartAt moves the partition's commit point to next (offset_out_of_range)
// and stores it before reading from there: once every record dispatched
// before is acknowledged and committed, the new offset is committed, so
// that the next owner starts there too and skips nothing that arrives
// meanwhile. recreated says whether next is a start in a topic created
// again; a re-creation found while it waits, when it is not, ends it
// (errRecreated).
func (p *partition) restartAt(ctx context.Context, next int64, recreated bool) error {
	m := p.m
	for n := 1; ; n++ {
		if lost := p.lostTo.Load(); lost >= 0 && lost < next {
			return errLostBelow
		}
		if !recreated && p.recreated.Load() {
			return errRecreated
		}
		if ctx.Err() != nil {
			return ctx.Err() // released: the next owner starts from the offset stored
		}
		if p.tracker.settled() {
			// Cleared before the jump: a re-creation found from here on is
			// one this restart has not seen, and the reader restarts the
			// partition again once it is assigned (apply).
			if p.recreated.Swap(false) && !recreated {
				p.recreated.Store(true)
				return errRecreated
			}
			// Under commitMu with the flags: a commit between the jump
			// and their clearing would take next for a deleted topic's
			// offset, mark it committed and store nothing.
			m.commitMu.Lock()
			p.tracker.jump(next)
			p.deletedTopic, p.newTopicStored = false, false
			m.commitMu.Unlock()
			err := m.commitOne(p)
			if err != nil && !errors.Is(err, errDeposed) {
				p.log.Warn("storing the new start offset failed; retrying", "offset", next, "err", err)
			}
			if err == nil || errors.Is(err, errDeposed) {
				return err
			}
		} else {
			m.kickCommit()
		}
		if !sleep(ctx, backoff(min(n, 8), 20*time.Millisecond, time.Second)) {
			return ctx.Err()
		}
	}
}

// applyOutOfRange applies offset_out_of_range to an offset that Kafka no
// longer has, loudly: records between it and the oldest one were deleted
// by retention before they were pushed. oldest is the log start it
// found.
func (p *partition) applyOutOfRange(ctx context.Context, offset int64, recreated bool) (next, oldest int64, err error) {
	m := p.m
	policy := m.cfg.OffsetOutOfRange
	// The range decides, and is often asked while brokers are in trouble:
	// asked again until both ends are known (a range taken for unknown
	// applied the policy to an offset Kafka has).
	var newest int64
	for n := 1; ; n++ {
		if oldest, err = p.resolve(ctx, "oldest"); err == nil {
			newest, err = p.resolve(ctx, "newest")
		}
		if err == nil {
			break
		}
		wait := backoff(n, 100*time.Millisecond, 5*time.Second)
		p.log.Warn("offset_out_of_range: no answer from Kafka; retrying", "err", err, "attempt", n, "wait", wait)
		if !sleep(ctx, wait) {
			return 0, 0, ctx.Err()
		}
	}
	if oldest <= offset && offset <= newest && !recreated {
		// Kafka has the offset: the answer was a broker's passing one (a
		// leader moving, a stale broker). The policy is for an offset Kafka
		// no longer has; applied here it would skip records (newest), push
		// the partition again (oldest) or stop the module (stop). A topic
		// created again is another log: its offsets say nothing of this one.
		// A broker answering so again and again is asked less and less often.
		if time.Since(p.passingOORAt) > time.Minute {
			p.passingOOR = 0
		}
		p.passingOOR++
		p.passingOORAt = time.Now()
		var wait time.Duration
		if p.passingOOR > 1 {
			wait = backoff(p.passingOOR-1, 100*time.Millisecond, 5*time.Second)
		}
		p.log.Warn("offset out of range answered for an offset kafka has; reading on from it",
			"offset", offset, "oldest", oldest, "newest", newest, "in_a_row", p.passingOOR, "wait", wait)
		if !sleep(ctx, wait) {
			return 0, 0, ctx.Err()
		}
		return offset, oldest, nil
	}
	p.log.Error("stored offset out of range", "offset", offset, "oldest", oldest, "newest", newest, "offset_out_of_range", policy)
	m.stats.outOfRange()
	if policy == "stop" {
		return 0, 0, fmt.Errorf("%s/%d: offset %d out of range [%d, %d] and offset_out_of_range is stop", m.cfg.Topic, p.id, offset, oldest, newest)
	}
	if policy == "oldest" {
		return oldest, oldest, nil
	}
	return newest, oldest, nil
}

// resolve turns oldest/newest into an offset.
func (p *partition) resolve(ctx context.Context, where string) (int64, error) {
	off, err := p.listOffset(ctx, where)
	if err != nil {
		return 0, fmt.Errorf("%s offset of %s/%d: %w", where, p.m.cfg.Topic, p.id, err)
	}
	return off, nil
}

// listOffset asks the partition's leader for its oldest offset (the log
// start) or its newest: the last stable offset, which is the log end unless
// a transaction is open; starting there, records of a transaction still
// open are pushed once it commits instead of being skipped. An answer
// that can change soon (the leader moved: NOT_LEADER_OR_FOLLOWER, …) is
// asked again, for kafkaTimeout at most.
func (p *partition) listOffset(ctx context.Context, where string) (int64, error) {
	t, topic := p.m.t, p.m.cfg.Topic
	return p.listOffsetWith(ctx, func(ctx context.Context) (kadm.ListedOffsets, error) {
		if where == "newest" {
			return t.adm.ListCommittedOffsets(ctx, topic)
		}
		return t.adm.ListStartOffsets(ctx, topic)
	})
}

// listOffsetWith is listOffset with the question asked by list.
func (p *partition) listOffsetWith(ctx context.Context, list func(context.Context) (kadm.ListedOffsets, error)) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, kafkaTimeout)
	defer cancel()
	t, topic := p.m.t, p.m.cfg.Topic
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		listed, err := list(ctx)
		if err == nil {
			o, ok := listed.Lookup(topic, p.id)
			switch {
			case !ok:
				err = fmt.Errorf("partition %d not in the answer", p.id)
			case o.Err == nil:
				return o.Offset, nil
			default:
				err = o.Err
			}
		}
		if !kerr.IsRetriable(err) {
			return -1, err
		}
		t.client.ForceMetadataRefresh()
		if !sleep(ctx, wait) {
			return -1, err
		}
	}
}
