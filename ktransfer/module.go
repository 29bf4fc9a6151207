package ktransfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// module pushes one topic's records to its backends.
type module struct {
	cfg     Module
	t       *Transfer
	log     *slog.Logger
	pusher  *pusher
	methods map[string]bool
	stats   *moduleStats

	limiter  *limiter  // rate_limit; nil: none
	breakers *breakers // one per backend

	// slots holds one token per record dispatched and not yet committed:
	// a full channel pauses reading (window_size).
	slots chan struct{}
	// pushesCut is closed when the run's pushes are cut short (the stop's
	// or the reload's shutdown_timeout_ms passed): a hand-over then waits
	// for none of its pushes any more. nil: never (a replay).
	pushesCut   <-chan struct{}
	commitKick  chan struct{}
	uncommitted atomic.Int64 // records acknowledged, not yet committed
	committing  atomic.Int64 // of those, the records the commit in flight covers
	headroom    atomic.Int64 // records acknowledged while the last commit was written
	lastKick    atomic.Int64 // monoNow() of ack's latest wake-up of the committer
	// topicLate: when (Unix ms, a minute early for the producers' clocks)
	// the module found its topic missing (as the process or a reload
	// started it, or coordinate), 0 if it did not: the topic was created
	// since, and start_from newest starts a partition without a stored
	// offset at its first record written since.
	topicLate atomic.Int64
	// topicSeen: the brokers listed the topic's partitions to this run
	// since it found the topic missing (modulePartitions).
	topicSeen atomic.Bool
	// aside: the module deregistered and handed its partitions over, no
	// broker answering the process (cutoff.go), until one answers.
	aside atomic.Bool
	// started holds the partitions (int32) this run started at least
	// once: topicLate counts for a partition's first start only.
	started sync.Map

	sched scheduler // dispatched records → workers

	mu        sync.Mutex
	parts     map[int32]*partition // read by the committer and /status
	claims    map[int32]*claimed   // the partitions this process holds
	releasing map[int32]int        // partitions being released (their owner node is still in use)
	handing   map[int32]*claimed   // the claims being handed over, watched as held ones (guardOwners)

	commitMu sync.Mutex // one commit at a time: each frees the slots it covers once
	changed  chan struct{}
	// ownersChanged wakes guardOwners: owners/ changed (watchDir).
	ownersChanged chan struct{}
	// otherTopic is how many instances of the group read another topic,
	// as the coordinator last counted them (logged when it changes).
	otherTopic int
	// unreadableOwners describes the owner nodes the coordinator could
	// not read at its last reassignment ("" for none; logged when it
	// changes: warnUnreadable).
	unreadableOwners string
	// rewrittenOwners is, per partition whose owner node was rewritten by
	// hand and is still this process's session's, the rewrite (its Mzxid)
	// last warned of; the coordinator's alone.
	rewrittenOwners map[int32]int64
	// persistentIDs is how many nodes under ids/ are persistent (no live
	// instance), as the coordinator last counted them.
	persistentIDs int

	// reader is the module's own Kafka client and poll loop: modules on
	// one topic each read all of it.
	reader *reader

	// replaying: the module pushes its dead letters again (Replay); a
	// record given up on stays where it is, in the dead-letter topic.
	replaying bool
}

// consumerOpts are a module's Kafka consumer options beside the shared
// ones (brokers, TLS, SASL).
func consumerOpts(shared []kgo.Opt, cfg Module) []kgo.Opt {
	return append(fetchOpts(slices.Clip(shared), cfg),
		// Records of aborted transactions are never pushed; the markers
		// are kept so that the commit point can pass them.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		// An offset Kafka no longer has is reported, not silently reset:
		// offset_out_of_range decides (partition.applyOutOfRange).
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		// A broker holds a fetch until data comes or this wait passes, and
		// kgo adds a newly claimed partition to the broker's next fetch:
		// with kgo's default (5 s) a partition claimed beside one at its
		// end waited that long for its first records, at every start
		// (claims come one by one) and hand-over. The Java consumer's
		// default; an idle module asks each broker twice a second. (Ending
		// the fetches in flight at a claim takes every partition read out
		// until kgo's metadata update puts it back with the new one: the
		// others stall while metadata is slow.)
		kgo.FetchMaxWait(fetchMaxWait),
	)
}

// fetchOpts adds a module's fetch limits to opts: fetch_max_bytes and
// fetch_max_partition_bytes. An answer is read whole, up to twice the
// fetch's size (a first record batch larger than it comes whole), and
// never less than franz-go's default, 100 MiB.
func fetchOpts(opts []kgo.Opt, cfg Module) []kgo.Opt {
	return append(opts,
		kgo.FetchMaxBytes(int32(cfg.FetchMaxBytes)),
		kgo.FetchMaxPartitionBytes(int32(cfg.FetchMaxPartitionBytes)),
		kgo.BrokerMaxReadBytes(int32(max(100<<20, 2*cfg.FetchMaxBytes))))
}

// fetchMaxWait bounds how long a newly claimed partition waits for its
// first fetch (consumerOpts).
const fetchMaxWait = 500 * time.Millisecond

func newModule(cfg Module, t *Transfer) (*module, error) {
	p, err := pusherFor(&cfg)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(consumerOpts(t.kafkaOpts, cfg)...)
	if err != nil {
		return nil, fmt.Errorf("module %s: kafka consumer: %w", cfg.Name, err)
	}
	m := &module{
		cfg: cfg, t: t, pusher: p, log: t.log.With("module", cfg.Name, "topic", cfg.Topic),
		slots:      make(chan struct{}, cfg.WindowSize),
		commitKick: make(chan struct{}, 1),
		parts:      map[int32]*partition{},
		claims:     map[int32]*claimed{},
		releasing:  map[int32]int{},
		handing:    map[int32]*claimed{},
		changed:    make(chan struct{}, 1), ownersChanged: make(chan struct{}, 1),
	}
	m.methods = methodSet(cfg)
	m.sched = newScheduler(cfg)
	m.limiter = newLimiter(cfg)
	m.reader = newReader(m, cl)
	return m, nil
}

// bindMetrics creates the module's series and its breakers, which count
// into them, and says which of its keys have no effect. It is called when
// the module is about to run, not when it is built: a module built by a
// refused reload leaves /metrics and the log unchanged.
func (m *module) bindMetrics() {
	m.stats = m.t.metrics.module(m.cfg.Name)
	m.breakers = newBreakers(m.cfg, m.stats)
	cfg := m.cfg
	if cfg.WaitingQueueSize > 0 || slices.Contains(cfg.legacyKeys, "waiting_queue_size") {
		m.log.Info("waiting_queue_size has no effect (the window bounds the waiting records)")
	}
	if cfg.ExpectedProcessingTimeMs != 0 || slices.Contains(cfg.legacyKeys, "expected_processing_time_ms") {
		m.log.Info("expected_processing_time_ms is accepted for compatibility and has no effect")
	}
	for _, k := range cfg.noEffect() {
		// Loaded as before; said, so that no one believes it works.
		m.log.Warn("config key has no effect", "file", cfg.File, "key", k.key, "value", k.value, "reason", k.reason)
	}
	for _, w := range cfg.unwise() {
		m.log.Warn("unwise config", "file", cfg.File, "what", w)
	}
}

// methodSet is the methods filter, or nil when every record is pushed.
func methodSet(cfg Module) map[string]bool {
	if len(cfg.Methods) == 0 {
		return nil
	}
	set := map[string]bool{}
	for _, name := range cfg.Methods {
		set[name] = true
	}
	return set
}

// topicMissing notes that the module's topic was found missing at
// since: the first finding counts (start_from newest reads from it).
func (m *module) topicMissing(since time.Time) {
	m.topicLate.CompareAndSwap(0, since.Add(-time.Minute).UnixMilli())
}

// modulePartitions is the module's topic's partition list for a
// reassignment: the list read last (knownPartitions), but a module that
// found its topic missing asks the brokers until they list it: the list
// read last may be of a topic deleted since (read by another module, or
// the module's previous run), and the module would register and claim
// partitions of a topic that does not exist.
func (m *module) modulePartitions(ctx context.Context) ([]int32, error) {
	if m.topicLate.Load() == 0 || m.topicSeen.Load() {
		return m.t.knownPartitions(ctx, m.cfg.Topic)
	}
	parts, err := m.t.partitions(ctx, m.cfg.Topic)
	if err == nil {
		m.topicSeen.Store(true)
	}
	return parts, err
}

// checkDeadLetterTopic warns as the module's run starts when its
// dead_letter_topic does not exist: a record given up waits for it
// (retried, not committed; ktransfer_dead_letter_write_errors_total) until
// it is created, or until the brokers create it at the first write where
// they create topics on use. And when it is compacted: the brokers refuse
// a dead letter without a key (INVALID_RECORD), so a record read without
// one and given up is dropped (logged, ktransfer_dead_letters_dropped_total),
// and compaction keeps only each key's latest dead letter.
func (m *module) checkDeadLetterTopic(ctx context.Context) {
	topic := m.cfg.DeadLetterTopic
	_, err := m.t.topicDetail(ctx, topic)
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		m.log.Warn("dead_letter_topic does not exist: records given up wait for it, retried and not committed, until it is created (or created at the first dead letter where the brokers create topics on use)",
			"dead_letter_topic", topic)
		return
	case err != nil:
		if ctx.Err() == nil {
			m.log.Warn("dead_letter_topic not checked", "dead_letter_topic", topic, "err", err)
		}
		return
	}
	tc, err := m.t.topicConfig(ctx, topic)
	switch {
	case tc.Compacted:
		m.log.Warn("dead_letter_topic is compacted (cleanup.policy compact): Kafka refuses a dead letter without a key, so a record read without one and given up is dropped (logged, ktransfer_dead_letters_dropped_total), and compaction keeps only each key's latest dead letter",
			"dead_letter_topic", topic)
	case err != nil && ctx.Err() == nil && !errors.Is(err, kafkaconf.ErrNoMaxBytes):
		// A principal that may not describe configs: the dead letters are
		// written all the same.
		m.log.Info("dead_letter_topic's configuration not read", "dead_letter_topic", topic, "err", err)
	}
}

// run pushes this process's share of the module's partitions until
// readCtx ends, then hands them over: it deregisters (the other processes
// compute the new assignment at once), releases every partition in
// parallel (pushes and retries stop, the pushes in progress are waited
// for until shutdown_timeout_ms, what is acknowledged is committed, the
// owner node is deleted), and stops its workers; pushCtx bounds that wait.
func (m *module) run(readCtx, pushCtx context.Context) error {
	m.pushesCut = pushCtx.Done() // before the coordinator's releases can look at it
	var workers sync.WaitGroup
	for i := range m.cfg.WorkerNum {
		workers.Go(func() { m.worker(i) })
	}
	commitCtx, stopCommits := context.WithCancel(context.Background())
	var committer sync.WaitGroup
	committer.Go(func() { m.commitLoop(commitCtx) })

	readerCtx, stopReader := context.WithCancel(readCtx)
	var reader sync.WaitGroup
	reader.Go(func() { m.reader.run(readerCtx) })
	reader.Go(func() { m.followLogEnds(readerCtx) })
	if m.cfg.DeadLetterTopic != "" && !m.replaying {
		reader.Go(func() { m.checkDeadLetterTopic(readerCtx) })
	}

	// owners/ is watched, and the claims guarded (guardOwners), from the
	// coordination's start until the hand-overs of the stop below ended:
	// a partition taken while it is handed over must not wait for its
	// pushes in progress.
	// The watch is not waited for (as ids/'s): armed again on a client
	// without a connection, it would hold the stop until the client gives
	// the request up.
	ownersDir := zklayout.Owners(m.t.cfg.ZKChroot, m.cfg.Name, m.cfg.Topic)
	guardCtx, stopGuard := context.WithCancel(context.Background())
	var guard sync.WaitGroup
	defer guard.Wait()
	defer stopGuard()
	go m.watchDir(guardCtx, ownersDir)
	guard.Go(func() { m.guardOwners(guardCtx, ownersDir) })

	errc := make(chan error, 1)
	coordCtx, stopCoordinating := context.WithCancel(readCtx)
	var coordinator sync.WaitGroup
	coordinator.Go(func() { m.coordinate(coordCtx, errc) })
	var err error
	select {
	case <-readCtx.Done():
	case err = <-errc:
		m.log.Error("module stopped", "err", err)
	}
	stopCoordinating()
	coordinator.Wait()
	if _, up := m.t.session(); up {
		if err := m.deregister(); err != nil {
			m.log.Warn("deregister failed", "err", err)
		}
	}
	m.mu.Lock()
	claims := make([]*claimed, 0, len(m.claims))
	for _, c := range m.claims {
		claims = append(claims, c)
	}
	m.mu.Unlock()
	mode := handOver
	if _, up := m.t.session(); !up {
		mode = drop
	}
	m.releaseAll(claims, mode)
	stopGuard()
	stopReader()
	reader.Wait() // nothing is dispatched any more
	m.sched.close()
	drained := make(chan struct{})
	go func() {
		workers.Wait()
		// The run pushes no more: its keep-alive connections close now,
		// not after the idle timeout. Pushes abandoned below return
		// theirs when they end, and are closed then.
		m.pusher.closeIdle()
		close(drained)
	}()
	select {
	case <-drained:
	case <-pushCtx.Done():
		// A push without a read timeout is not interrupted by its
		// context: its record stays uncommitted and is pushed again by
		// the next owner.
		select {
		case <-drained:
		case <-time.After(time.Second):
			m.log.Warn("pushes still in progress at shutdown; abandoned, their records stay uncommitted and their connections are closed")
			// Closing their connections ends them: they would otherwise
			// hold their workers, this run and the connections for ever
			// (one more at each reload restarting the module).
			m.pusher.closeAll()
			select {
			case <-drained:
			case <-time.After(time.Second):
			}
		}
	}
	stopCommits()
	committer.Wait()
	return err
}

// dispatch hands a record to the workers, after taking a window slot.
func (m *module) dispatch(ctx context.Context, r *record) bool {
	if !m.takeSlot(ctx) {
		return false
	}
	r.part.tracker.dispatch(r.msg.Offset)
	// false: dispatched but never queued; it stays below the commit point
	// and is read again after the restart.
	return m.sched.put(ctx, r)
}

// pass counts a record with nothing to push (a transaction marker) as
// dispatched and acknowledged, so that the commit point moves past it.
func (m *module) pass(ctx context.Context, r *record) bool {
	if !m.takeSlot(ctx) {
		return false
	}
	r.part.tracker.dispatch(r.msg.Offset)
	m.ack(r)
	return true
}

// takeSlot takes a window slot. The reader polls no more records than
// there are free slots, so it does not wait.
func (m *module) takeSlot(ctx context.Context) bool {
	select {
	case m.slots <- struct{}{}:
		return true
	default:
	}
	m.kickCommit()
	select {
	case m.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// worker pushes the records the scheduler gives worker i. A record of a
// released partition is dropped: it stays uncommitted (the next owner
// pushes it), and an acknowledgement after the release counts no more.
func (m *module) worker(i int) {
	var buf []byte
	m.sched.work(i, func(r *record) {
		// Announce the push before checking the partition is still ours:
		// a release sets released first and then waits for pushing to
		// drop to zero, so either it waits for this push or this sees it.
		r.part.pushing.Add(1)
		if !r.part.released.Load() && m.handle(r.part.ctx, r, &buf) != outUnfinished {
			m.ack(r)
		}
		r.part.pushing.Add(-1)
	})
}

// ack finishes a record and wakes the committer when a commit is due.
// A commit is a ZooKeeper write with a disk sync: waking the committer on
// every acknowledgement kept ZooKeeper writing back to back under load
// (about 250 records per commit; ZooKeeper then used half as much CPU per
// record as ktransfer itself, on a host that runs both). It is due when:
//   - the records acknowledged and not covered by the commit in flight
//     reach dueAt (with those it covers counted too, every acknowledgement
//     during a commit queued the next one: commits ran back to back, each
//     covering what the workers finished while the previous one was
//     written, about 200 records on the benchmark);
//   - nothing else is in flight: an idle module's offsets are stored at once;
//   - commitAfter passed since the last wake-up: records acknowledged behind
//     a slow one (not committable yet) can keep the others below the
//     threshold.
//
// What ack leaves waiting, the committer's own timer commits (commitLoop),
// as do the reader's wake-ups while the window is full (at most every
// commitAfter) and the periodic commit (zk_offset_update_interval_sec).
func (m *module) ack(r *record) {
	moved := r.part.tracker.ack(r.msg.Offset)
	if moved == 0 {
		return
	}
	n := m.uncommitted.Add(int64(moved))
	due := n-m.committing.Load() >= m.dueAt() || n >= int64(len(m.slots))
	now := monoNow()
	if due || now-m.lastKick.Load() >= int64(commitAfter) {
		m.lastKick.Store(now)
		m.kickCommit()
	}
}

// dueAt is how many acknowledged records make a commit due. The window
// beyond worker_num is what the workers can have acknowledged while they
// keep pushing; the commit must end before they run out of records, and
// the workers go on acknowledging while it is written (headroom: what they
// did during the last one, twice, for a slower write). So it is that span
// less twice the headroom, between a quarter and half of the span: the
// more records each commit covers, the fewer ZooKeeper writes (each costs
// ZooKeeper about 0.25 ms of CPU once warm, which a host running both takes
// from the pushes).
func (m *module) dueAt() int64 {
	span := int64(max(1, cap(m.slots)-m.cfg.WorkerNum))
	return max(1, min(span/2, max(span/4, span-2*m.headroom.Load())))
}

// monoNow is a monotonic clock in nanoseconds for the commit timing
// (lastKick): a wall clock stepped back would postpone commits by the step.
func monoNow() int64 { return int64(time.Since(monoStart)) }

var monoStart = time.Now()

// commitAfter bounds how long acknowledged records wait for a commit to
// start while ZooKeeper stores them (ack's rule, commitLoop's timer).
const commitAfter = 20 * time.Millisecond

// outcome is what became of a record handle was given.
type outcome int

const (
	outUnfinished outcome = iota // stopped (released, shutting down): whoever reads it next pushes it
	outPushed                    // a backend answered 2xx
	outSkipped                   // not to be pushed: filtered out, or no method to match
	outGivenUp                   // given up on and reported
)

// handle filters, pushes and retries one record; every outcome but
// outUnfinished finishes it. It stops, unfinished, when ctx ends or the
// partition is released.
func (m *module) handle(ctx context.Context, r *record, buf *[]byte) outcome {
	if m.methods != nil || m.pusher.tmpl.needMethod {
		method, err := methodOf(r.msg.Value)
		r.method = method
		if m.methods != nil {
			if err != nil {
				// The 2015 code retried such a record forever; it cannot
				// match a filter, so it is skipped (or dead-lettered).
				m.log.Debug("record without a method skipped", "partition", r.msg.Partition, "offset", r.msg.Offset, "err", err)
				if m.cfg.DeadLetterTopic != "" && !m.replaying && !m.deadLetter(ctx, r, err.Error()) {
					return outUnfinished // counted by whoever skips it again
				}
				m.stats.skipped(skipMalformed)
				return outSkipped
			}
			if !m.methods[method] {
				m.stats.skipped(skipFiltered)
				return outSkipped
			}
		}
	}
	if m.pusher.targetHeader != "" {
		t, why := m.pusher.targetOf(r.msg)
		if why != "" {
			// No retry can make it allowed: given up at once.
			return m.giveUp(ctx, r, "target not allowed: "+why, 0)
		}
		r.target = t
	}
	if r.target == nil && m.pusher.tmpl.dotSegment(m.pusher.varsOf(r)) {
		// A server that normalizes paths would take it for another path.
		return m.refuse(ctx, r, `its key or method makes a segment "." or ".." of the path of uri`)
	}
	start := time.Now()
	first := m.pusher.start()
	base := time.Duration(m.cfg.FailRetryIntervalMs) * time.Millisecond
	// A cap below fail_retry_interval_ms (the default cap, 10 s, under a
	// longer interval of a file written before the cap existed) leaves the
	// interval undoubled: retries are never closer than the interval.
	ceiling := max(time.Duration(m.cfg.MaxRetryIntervalMs)*time.Millisecond, base)
	// A record waits while every backend is open, without using an
	// attempt; but not one pinned to a single backend by its target (the
	// records for a dead backend would hold every worker and the window,
	// and the healthy backends would starve), nor a replay's (it would
	// never end while the backends are down): for them an open breaker is
	// a failed attempt.
	wait := r.target == nil && !m.replaying
	// deferred: per backend (breaker), until when it asked, with
	// Retry-After, that this record not come back.
	var deferred map[int]time.Time
	for n := 0; ; n++ {
		from, count := first+n, len(m.pusher.backends)
		if r.target != nil {
			from, count = r.target.backend, 1 // retried to the same URL
		}
		c, g := m.choose(ctx, r.part, from, count, wait, deferred)
		if g == chosenStopped {
			return outUnfinished
		}
		backend := c.i
		var a attempt
		v, reason := retry, "backend's circuit breaker open"
		if g == chosenBackend {
			a = m.pusher.push(backend, r, buf)
			v, reason = judge(a)
			if errors.Is(a.err, errPushNotFresh) {
				// Not sent: chosen again, once ZooKeeper answers in the
				// claim's session, or stopped with the partition.
				m.breakers.abandon(c)
				n--
				continue
			}
			if n > 0 {
				// A retry made: counted once its push is, not when its
				// backoff began (a release, a reload or a stop in the
				// backoff, or while every backend was open, made none).
				m.stats.retried()
			}
			if v != pushed && (r.part != nil && r.part.released.Load() || ctx.Err() != nil) {
				// Released or stopped meanwhile (a replay interrupted), the
				// push abandoned (its connection closed): no failure of the
				// backend's, nor of the record's.
				m.breakers.abandon(c)
				return outUnfinished
			}
			m.breakers.report(c, v)
		}
		switch v {
		case pushed:
			m.stats.pushed(time.Since(start))
			return outPushed
		case permanent:
			// Given up at once only into a dead-letter topic; without one it
			// is retried like any failure: never committed undelivered and
			// unreported.
			if m.cfg.DeadLetterTopic != "" {
				return m.giveUp(ctx, r, reason, n+1)
			}
		}
		if m.cfg.MaxRetryTimes >= 0 && n >= m.cfg.MaxRetryTimes {
			return m.giveUp(ctx, r, "retries exhausted: "+reason, n+1)
		}
		// A Retry-After holds for the backend that sent it: the retry
		// goes to another backend after the backoff, and waits for it only
		// to go back to that one (choose passes it over until then; a
		// record pinned to it by its target waits it out). It was the
		// wait before any retry: a record's retry on a healthy backend
		// waited for another backend's Retry-After.
		if a.retryAfter > 0 {
			if deferred == nil {
				deferred = map[int]time.Time{}
			}
			deferred[m.breakers.of[backend]] = time.Now().Add(a.retryAfter)
		}
		wait := backoff(n+1, base, ceiling)
		level, msg := slog.LevelWarn, "push failed; retrying"
		if v == permanent {
			level, msg = slog.LevelError, "push refused and no dead_letter_topic; retrying"
		}
		m.log.Log(ctx, level, msg, "partition", r.msg.Partition, "offset", r.msg.Offset,
			"backend", m.pusher.addrs[backend], "attempt", n+1, "reason", reason, "wait", wait, "retry_after", a.retryAfter)
		if !sleep(ctx, wait) {
			return outUnfinished
		}
	}
}

// refuse finishes a record no push may carry as a backend's permanent
// refusal is (handle), without pushing it: given up at once into a
// dead-letter topic; without one retried, each refusal logged as an error,
// until max_retry_times (-1: until the partition is released or the module
// stops). It stops, unfinished, when ctx ends or the partition is released.
func (m *module) refuse(ctx context.Context, r *record, reason string) outcome {
	if m.cfg.DeadLetterTopic != "" {
		return m.giveUp(ctx, r, reason, 0)
	}
	base := time.Duration(m.cfg.FailRetryIntervalMs) * time.Millisecond
	ceiling := max(time.Duration(m.cfg.MaxRetryIntervalMs)*time.Millisecond, base)
	for n := 0; ; n++ {
		if r.part != nil && r.part.released.Load() || ctx.Err() != nil {
			return outUnfinished
		}
		if m.cfg.MaxRetryTimes >= 0 && n >= m.cfg.MaxRetryTimes {
			return m.giveUp(ctx, r, "retries exhausted: "+reason, 0)
		}
		wait := backoff(n+1, base, ceiling)
		m.log.Error("push refused and no dead_letter_topic; retrying", "partition", r.msg.Partition, "offset", r.msg.Offset,
			"key", string(r.msg.Key), "attempt", n+1, "reason", reason+" (not pushed)", "wait", wait)
		if !sleep(ctx, wait) {
			return outUnfinished
		}
		m.stats.retried()
	}
}

// mayPush waits while ZooKeeper has not answered for the session grace, or
// answered in another session than the claim's (the process may be about
// to lose the partition: after a pause, the session watcher may not have
// run yet), and reports whether the partition is still this process's.
func (m *module) mayPush(p *partition) bool {
	for !m.zkFresh(p) {
		if !sleep(p.ctx, 5*time.Millisecond) {
			return false
		}
	}
	return !p.released.Load()
}

// zkFresh reports whether ZooKeeper answered within the session grace, in
// the session of p's claim.
func (m *module) zkFresh(p *partition) bool {
	return m.t.fresh() && m.t.answeredSID.Load() == p.session
}

// giveUp reports a record that will not be pushed: logged, counted, and
// written to the dead-letter topic when there is one (unless it is being
// replayed from there).
func (m *module) giveUp(ctx context.Context, r *record, reason string, attempts int) outcome {
	if m.replaying {
		m.stats.failed()
		// A dead letter given up again is not written again: it stays in
		// the dead-letter topic (which m.log names), to be replayed later.
		m.log.Error("dead letter given up again; it stays in the dead-letter topic", "topic", r.msg.Topic,
			"partition", r.msg.Partition, "offset", r.msg.Offset, "key", string(r.msg.Key), "attempts", attempts, "reason", reason)
		return outGivenUp
	}
	m.log.Error("record given up", "partition", r.msg.Partition, "offset", r.msg.Offset,
		"key", string(r.msg.Key), "attempts", attempts, "reason", reason, "dead_letter_topic", m.cfg.DeadLetterTopic)
	if m.cfg.DeadLetterTopic == "" || m.deadLetter(ctx, r, reason) {
		m.stats.failed()
		return outGivenUp
	}
	// Counted once its dead letter is written: by whoever gives it up
	// again (the next run, the next owner), not at each attempt.
	m.log.Warn("dead-letter write stopped (partition released or module stopping); the record is left uncommitted to the next run or owner",
		"partition", r.msg.Partition, "offset", r.msg.Offset, "dead_letter_topic", m.cfg.DeadLetterTopic)
	return outUnfinished
}

func (m *module) kickCommit() {
	select {
	case m.commitKick <- struct{}{}:
	default:
	}
}

// commitLoop commits offsets when ack or the reader wakes it (one write in
// flight at a time), and at least every zk_offset_update_interval_sec (1 s
// when unset), until ctx ends.
//
// ack does not wake it for records acknowledged within commitAfter of its
// last wake-up, nor counts those the commit in flight covers: when traffic
// stops then (a record of another partition still retried, so "nothing
// else in flight" never holds), no acknowledgement is left to wake it. So
// after a commit that stored something, a timer wakes it commitAfter after
// its last wake-up (waiting again when it was woken meanwhile: that commit
// ran), and it commits then if records are still acknowledged and not
// committed. A commit that stores nothing (ZooKeeper away, a partition
// unsure) arms no timer: those records wait for the next wake-up or the
// periodic commit instead of a retry every commitAfter.
func (m *module) commitLoop(ctx context.Context) {
	every := time.Second
	if s := m.cfg.ZKOffsetUpdateIntervalS; s > 0 {
		every = time.Duration(s) * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	tail := time.NewTimer(time.Hour)
	tail.Stop()
	defer tail.Stop()
	for {
		select {
		case <-m.commitKick:
		case <-t.C:
		case <-tail.C:
			if m.uncommitted.Load() == 0 {
				continue // committed meanwhile
			}
			if wait := m.untilCommitAfter(); wait > 0 {
				// Woken meanwhile, and that commit (or the one queued) ran
				// or runs: wait commitAfter from that wake-up, as ack does.
				tail.Reset(wait)
				continue
			}
			m.lastKick.Store(monoNow()) // ack's next wake-up is commitAfter from now
		case <-ctx.Done():
			return
		}
		if m.commitAll() > 0 {
			tail.Reset(m.untilCommitAfter())
		}
	}
}

// untilCommitAfter is how long until commitAfter has passed since the
// committer's last wake-up; 0 or less when it has.
func (m *module) untilCommitAfter() time.Duration {
	return commitAfter - time.Duration(monoNow()-m.lastKick.Load())
}

// commitAll stores every partition's commit point that moved, in one
// fenced ZooKeeper transaction, and frees the window slots of the records
// it covers. A partition found deposed is released. It returns how many
// records the stored offsets cover.
func (m *module) commitAll() (stored int) {
	if !m.t.sessionUp() {
		return 0 // the partitions are being dropped; a write would wait for ZooKeeper and fail
	}
	m.commitMu.Lock()
	m.mu.Lock()
	parts := make([]*partition, 0, len(m.parts))
	for _, p := range m.parts {
		if p.tracker != nil {
			parts = append(parts, p)
		}
	}
	m.mu.Unlock()
	stored, lost := m.commitLocked(parts)
	m.commitMu.Unlock()
	for _, p := range lost {
		m.depose(p)
	}
	return stored
}

// commitOne commits partition p's commit point now.
func (m *module) commitOne(p *partition) error {
	m.commitMu.Lock()
	defer m.commitMu.Unlock()
	if _, lost := m.commitLocked([]*partition{p}); len(lost) > 0 {
		return errDeposed
	}
	if off, _, ok := p.tracker.toCommit(); ok {
		return fmt.Errorf("offset %d of partition %d not stored", off, p.id)
	}
	return nil
}

// depose releases partition p, found no longer this claim's by a fenced
// write: nothing is committed, and its owner node is deleted only when it
// is still this claim's.
func (m *module) depose(p *partition) {
	m.mu.Lock()
	c := m.claims[p.id]
	m.mu.Unlock()
	if c == nil || c.part != p {
		return
	}
	m.log.Error("partition lost: its owner node or offset changed under this process", "partition", p.id, "epoch", p.epoch)
	c.stop()
	go func() {
		m.release(c, deposed)
		m.wake()
	}()
}

// commitLocked stores the commit points of parts that moved, fenced (one
// multi-op; one per partition when it fails, to find the deposed ones),
// and frees the window slots of the records they cover. It returns how
// many records the stored offsets cover and the partitions found deposed.
// m.commitMu is held.
func (m *module) commitLocked(parts []*partition) (stored int, lost []*partition) {
	slices.SortFunc(parts, func(a, b *partition) int { return int(a.id - b.id) })
	var due []*partition
	var offsets []int64
	var records []int
	var versions []int32
	for _, p := range parts {
		if offset, n, ok := p.tracker.toCommit(); ok {
			if p.deletedTopic || p.pendingStart != nil {
				// Records of a deleted topic (a lost log, or read
				// below an out-of-range restart): the offset read from
				// next is stored already (storeNewTopicStart), or is
				// being stored (pendingStart: their offset must not go
				// over it). Their slots are freed, nothing is written.
				p.tracker.committedAt(offset, n)
				m.uncommitted.Add(-int64(n))
				for range n {
					<-m.slots
				}
				stored += n
				continue
			}
			if p.unsure && !m.t.settle(p) {
				continue // ZooKeeper does not answer: later
			}
			due = append(due, p)
			offsets = append(offsets, offset)
			records = append(records, n)
			versions = append(versions, p.offsetVersion)
		}
	}
	if len(due) == 0 {
		return stored, nil // those of a deleted topic or a pending restart, freed
	}
	covered := 0
	for _, n := range records {
		covered += n
	}
	m.committing.Store(int64(covered))
	start := time.Now()
	err := m.t.storeFenced(due, offsets, versions)
	m.stats.commitTook(time.Since(start))
	store := func(i int) {
		p := due[i]
		stored += records[i]
		p.tracker.committedAt(offsets[i], records[i])
		m.uncommitted.Add(-int64(records[i]))
		m.committing.Add(-int64(records[i]))
		for range records[i] {
			<-m.slots
		}
		p.storedAt(offsets[i])
	}
	switch {
	case err == nil:
		for i := range due {
			store(i)
		}
	case len(due) > 1 && (errors.Is(err, errDeposed) || errors.Is(err, errOffsetMoved)):
		// One of them is not ours any more: find which.
		for i, p := range due {
			err := m.t.storeFenced(due[i:i+1], offsets[i:i+1], versions[i:i+1])
			switch {
			case err == nil:
				store(i)
			case errors.Is(err, errDeposed), errors.Is(err, errOffsetMoved):
				m.log.Error("commit refused", "partition", p.id, "offset", offsets[i], "err", err)
				lost = append(lost, p)
			default:
				m.log.Warn("commit offset failed; will retry", "partition", p.id, "offset", offsets[i], "err", err)
			}
		}
	case errors.Is(err, errDeposed), errors.Is(err, errOffsetMoved):
		m.log.Error("commit refused", "partition", due[0].id, "offset", offsets[0], "err", err)
		lost = append(lost, due[0])
	default:
		m.log.Warn("commit offsets failed; will retry", "partitions", len(due), "err", err)
	}
	// What was acknowledged meanwhile (with what stays behind a slower
	// record: both wait for the next commit).
	m.headroom.Store(max(0, m.uncommitted.Load()-m.committing.Load()))
	m.committing.Store(0)
	m.reader.signal() // slots are free: reading goes on
	return stored, lost
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errOffsetMoved: the offset node changed since this claim last read or
// wrote it.
var errOffsetMoved = errors.New("offset node changed by another writer")

// storeFenced writes the next offsets to push of parts, in one ZooKeeper
// transaction (one disk sync on the ZooKeeper side) that also checks
// each partition's owner node (version) and that its offset node is as
// this claim left it (version; -1: absent, created here). Every owner
// node is at version 0: its check only tells that a node is there. The
// offset node's tells the claims apart: every claim rewrites it as it
// creates its owner node (takeOwner), and this claim's writes go on from
// the version that rewrite left.
// Nor is anything written for a claim made in another session than the
// client's now: its owner node went with that session, and a node of the
// same name and version may be another claim's since, as may the offset
// node (deleted by hand, created again by the next owner and written up
// to the same version), which the checks would then pass.
// On success each partition's offsetVersion is the new one. It fails with
// errDeposed when an owner node is gone or another claim's (or its
// session is), errOffsetMoved when an offset node was written by someone
// else.
func (t *Transfer) storeFenced(parts []*partition, offsets []int64, versions []int32) error {
	dir := zklayout.Offsets(t.cfg.ZKChroot, parts[0].m.cfg.Name, parts[0].m.cfg.Topic)
	conn := t.conn()
	for _, p := range parts {
		if p.session != conn.SessionID() {
			return errDeposed
		}
	}
	ops := make([]any, 0, 2*len(parts))
	for i, p := range parts {
		node := path.Join(dir, strconv.Itoa(int(p.id)))
		ops = append(ops, &zk.CheckVersionRequest{Path: p.owner, Version: p.ownerVersion})
		data := zklayout.EncodeOffset(offsets[i])
		if versions[i] < 0 {
			if err := t.createOffsetsDir(dir, p.m.cfg.Topic); err != nil {
				return err
			}
			ops = append(ops, &zk.CreateRequest{Path: node, Data: data, Acl: t.acl})
		} else {
			ops = append(ops, &zk.SetDataRequest{Path: node, Data: data, Version: versions[i]})
		}
	}
	res, err := conn.Multi(ops...)
	if err == nil {
		for i, p := range parts {
			if versions[i] < 0 {
				p.offsetVersion = 0
			} else {
				p.offsetVersion = res[2*i+1].Stat.Version
			}
			p.unsure = false
		}
		return nil
	}
	if !errors.Is(err, zk.ErrBadVersion) && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrNodeExists) {
		// Not an answer about the nodes (the connection broke): the write
		// may have been applied. Settled before the next commit, or the
		// start's next try (a create too: the node at version 0).
		for i, p := range parts {
			p.unsure, p.unsureValue = true, offsets[i]
		}
		return err
	}
	for _, p := range parts {
		data, stat, gerr := t.conn().Get(p.owner)
		switch {
		case errors.Is(gerr, zk.ErrNoNode), gerr == nil && (string(data) != t.id || stat.Czxid != p.epoch || stat.Version != p.ownerVersion):
			return errDeposed
		case gerr != nil:
			return err
		}
	}
	return fmt.Errorf("%w: %w", errOffsetMoved, err)
}

// createOffsetsDir creates the module's offsets/<topic> node when it is
// missing, recording in it the number of the topic's partitions as this
// process first read it: every process then tells a partition added to
// the topic later (sinceModuleStart), whenever it started.
func (t *Transfer) createOffsetsDir(dir, topic string) error {
	conn := t.conn()
	if ok, _, err := conn.Exists(dir); err == nil && ok {
		return nil
	}
	if err := zklayout.CreateAll(conn, path.Dir(dir), t.acl); err != nil {
		return err
	}
	var data []byte
	if n := t.firstPartitionCount(topic); n > 0 {
		data = zklayout.EncodeOffsetsTopic(n)
	}
	if _, err := conn.Create(dir, data, 0, t.acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	return nil
}

// settle finds out whether p's last write, which got no answer, was
// applied: the offset node one version further holding that write's
// offset is this claim's own write, when the owner node, read after it,
// is still this claim's. Else it is the next claim's rewrite (the same
// offset when the write stored the start again; a start's create is the
// next claim's start), and the claim's next write fails. It reports false
// when ZooKeeper does not answer.
func (t *Transfer) settle(p *partition) bool {
	node := path.Join(zklayout.Offsets(t.cfg.ZKChroot, p.m.cfg.Name, p.m.cfg.Topic), strconv.Itoa(int(p.id)))
	conn := t.conn()
	data, stat, err := syncedGet(conn, node)
	if err != nil {
		return errors.Is(err, zk.ErrNoNode) // the commit fails, and tells why
	}
	if v, perr := zklayout.ParseOffset(data); perr == nil && v == p.unsureValue && stat.Version == p.offsetVersion+1 {
		// Read after the offset node, on the same session (its reads
		// come in order): a claim made before that read has replaced
		// this claim's owner node by now.
		odata, ostat, err := conn.Get(p.owner)
		switch {
		case err == nil && string(odata) == t.id && ostat.Czxid == p.epoch:
			p.offsetVersion = stat.Version
		case err != nil && !errors.Is(err, zk.ErrNoNode):
			return false
		}
	}
	p.unsure = false
	return true
}

// syncedGet reads node after a sync: the server answering has applied
// every write the leader had committed when the sync reached it. A read
// alone may come from a server behind the others, which is what a client
// reconnected after a lost answer (settle), or in a new session
// (deleteOwnerOnce: a delete queued while disconnected, or retried later),
// may be talking to; acting on what it says (taking a commit that was
// applied for one that was not, deleting by version an owner node that is
// another claim's by now: every owner node is at version 0) is wrong.
func syncedGet(conn *zk.Conn, node string) ([]byte, *zk.Stat, error) {
	if _, err := conn.Sync(node); err != nil {
		return nil, nil, err
	}
	return conn.Get(node)
}

// loadOffset reads the stored next offset and its node's version; the
// version is -1 when none is stored.
func (t *Transfer) loadOffset(module, topic string, partition int32) (int64, int32, error) {
	p := path.Join(zklayout.Offsets(t.cfg.ZKChroot, module, topic), strconv.Itoa(int(partition)))
	data, stat, err := t.conn().Get(p)
	if errors.Is(err, zk.ErrNoNode) {
		return 0, -1, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read offset %s: %w", p, err)
	}
	v, err := zklayout.ParseOffset(data)
	if err != nil {
		return 0, 0, fmt.Errorf("offset %s: %w", p, err)
	}
	return v, stat.Version, nil
}
