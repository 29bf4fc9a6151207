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
	"github.com/twmb/franz-go/pkg/kgo"

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

	// slots holds one token per record dispatched and not yet committed:
	// a full channel pauses reading (window_size).
	slots       chan struct{}
	commitKick  chan struct{}
	uncommitted atomic.Int64 // records acknowledged, not yet committed
	lastKick    atomic.Int64 // unix ns of ack's latest wake-up of the committer

	sched scheduler // dispatched records → workers

	mu     sync.Mutex
	parts  map[int32]*partition // read by the committer and /status
	claims map[int32]*claimed   // the partitions this process holds

	commitMu sync.Mutex // one commit at a time: each frees the slots it covers once
	changed  chan struct{}

	// reader is the module's own Kafka client and poll loop: modules on
	// one topic each read all of it.
	reader *reader
}

func newModule(cfg Module, t *Transfer) (*module, error) {
	p, err := newPusher(cfg)
	if err != nil {
		return nil, err
	}
	opts := append(slices.Clip(t.kafkaOpts),
		// Records of aborted transactions are never pushed; the markers
		// are kept so that the commit point can pass them.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		// An offset Kafka no longer has is reported, not silently reset:
		// offset_out_of_range decides (partition.applyOutOfRange).
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("module %s: kafka consumer: %w", cfg.Name, err)
	}
	m := &module{
		cfg: cfg, t: t, pusher: p, log: t.log.With("module", cfg.Name, "topic", cfg.Topic),
		slots:      make(chan struct{}, cfg.WindowSize),
		commitKick: make(chan struct{}, 1),
		parts:      map[int32]*partition{},
		claims:     map[int32]*claimed{},
		changed:    make(chan struct{}, 1),
		stats:      t.metrics.module(cfg.Name),
	}
	if len(cfg.Methods) > 0 {
		m.methods = map[string]bool{}
		for _, name := range cfg.Methods {
			m.methods[name] = true
		}
	}
	m.sched = newScheduler(cfg)
	m.reader = newReader(m, cl)
	if cfg.WaitingQueueSize > 0 {
		m.log.Info("waiting_queue_size has no effect (the window bounds the waiting records)")
	}
	if cfg.ExpectedProcessingTimeMs > 0 {
		m.log.Info("expected_processing_time_ms is accepted for compatibility and has no effect")
	}
	return m, nil
}

// run pushes this process's share of the module's partitions until
// readCtx ends, then drains: the records already dispatched are pushed
// until pushCtx ends, the offsets are committed, and the partitions are
// handed over.
func (m *module) run(readCtx, pushCtx context.Context) error {
	var workers sync.WaitGroup
	for i := range m.cfg.WorkerNum {
		workers.Go(func() { m.worker(pushCtx, i) })
	}
	commitCtx, stopCommits := context.WithCancel(context.Background())
	var committer sync.WaitGroup
	committer.Go(func() { m.commitLoop(commitCtx) })

	readerCtx, stopReader := context.WithCancel(readCtx)
	var reader sync.WaitGroup
	reader.Go(func() { m.reader.run(readerCtx) })

	errc := make(chan error, 16)
	coordCtx, stopCoordinating := context.WithCancel(readCtx)
	var coordinator sync.WaitGroup
	coordinator.Go(func() { m.coordinate(coordCtx, errc) })
	var err error
	select {
	case <-readCtx.Done():
	case err = <-errc:
		m.log.Error("module stopped", "err", err)
	}
	// Shutdown order: 1. stop reassigning and reading (every partition
	// loop returns, then the poll loop); 2. close the queues and let the
	// workers push what was dispatched, bounded by pushCtx; 3. commit what
	// was acknowledged and stop the committer; 4. delete the owner nodes,
	// handing the partitions over at once.
	stopCoordinating()
	coordinator.Wait()
	m.mu.Lock()
	for _, c := range m.claims {
		c.cancel()
	}
	claims := make([]*claimed, 0, len(m.claims))
	for _, c := range m.claims {
		claims = append(claims, c)
	}
	m.mu.Unlock()
	for _, c := range claims {
		<-c.done
	}
	stopReader()
	reader.Wait() // nothing is dispatched any more
	m.sched.close()
	drained := make(chan struct{})
	go func() { workers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-pushCtx.Done():
		// A push without a read timeout cannot be interrupted: give the
		// workers a moment, then commit what is acknowledged and leave.
		// Their records stay uncommitted and are pushed after the restart.
		select {
		case <-drained:
		case <-time.After(time.Second):
			m.log.Warn("pushes still in flight at shutdown; their records will be pushed again after the restart")
		}
	}
	m.commitAll()
	stopCommits()
	committer.Wait()
	m.handOver()
	return err
}

// handOver gives up every partition this process holds, after their last
// commit: forgotten here first (so /status never shows a partition another
// process already took), then their owner nodes deleted.
func (m *module) handOver() {
	dir := zklayout.Owners(m.t.cfg.ZKChroot, m.cfg.Name, m.cfg.Topic)
	m.mu.Lock()
	held := make([]int32, 0, len(m.claims))
	for p := range m.claims {
		held = append(held, p)
		delete(m.parts, p)
	}
	clear(m.claims)
	m.mu.Unlock()
	for _, p := range held {
		m.stats.forget(p)
		node := path.Join(dir, strconv.Itoa(int(p)))
		if data, stat, err := m.t.conn().Get(node); err == nil && string(data) == m.t.id {
			_ = m.t.conn().Delete(node, stat.Version)
		}
	}
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

// worker pushes the records the scheduler gives worker i.
func (m *module) worker(ctx context.Context, i int) {
	var buf []byte
	m.sched.work(i, func(r *record) {
		// Announce the push before checking the partition is still ours:
		// a release sets released first and then waits for pushing to
		// drop to zero, so either it waits for this push or this sees it.
		r.part.pushing.Add(1)
		if !r.part.released.Load() && m.handle(ctx, r, &buf) {
			m.ack(r)
		}
		r.part.pushing.Add(-1)
		// Not acknowledged (shutdown cut a retry short): the record stays
		// uncommitted and is pushed again after the restart.
	})
}

// ack finishes a record and wakes the committer when a commit is due.
// A commit is a ZooKeeper write with a disk sync: waking the committer on
// every acknowledgement kept ZooKeeper writing back to back under load
// (about 250 records per commit; ZooKeeper then used half as much CPU per
// record as ktransfer itself, on a host that runs both). It is due when:
//   - the acknowledged records reach a quarter of the window beyond
//     worker_num, so that the workers keep records in flight while it is
//     written (with half, the window often filled with acknowledged
//     records waiting for the write: 0.73 of kgopusher on the benchmark
//     against 0.80 with a quarter, rounds of the two builds one run after
//     the other);
//   - nothing else is in flight: an idle module's offsets are stored at once;
//   - commitAfter passed since the last wake-up: records acknowledged behind
//     a slow one (not committable yet) can keep the others below the
//     threshold.
//
// The reader's wake-up when the window is full (at most every commitAfter)
// and the periodic commit (zk_offset_update_interval_sec) stay.
func (m *module) ack(r *record) {
	moved := r.part.tracker.ack(r.msg.Offset)
	if moved == 0 {
		return
	}
	n := m.uncommitted.Add(int64(moved))
	due := n >= max(1, int64(cap(m.slots)-m.cfg.WorkerNum)/4) || n >= int64(len(m.slots))
	now := time.Now().UnixNano()
	if due || now-m.lastKick.Load() >= int64(commitAfter) {
		m.lastKick.Store(now)
		m.kickCommit()
	}
}

// commitAfter bounds how long acknowledged records wait for a commit while
// records keep being acknowledged.
const commitAfter = 20 * time.Millisecond

// handle filters, pushes and retries one record; it reports whether the
// record is finished (pushed, skipped, or given up on and reported).
func (m *module) handle(ctx context.Context, r *record, buf *[]byte) bool {
	if m.methods != nil || m.pusher.tmpl.needMethod {
		method, err := methodOf(r.msg.Value)
		r.method = method
		if m.methods != nil {
			if err != nil {
				// The 2015 code retried such a record forever; it cannot
				// match a filter, so it is skipped (or dead-lettered).
				m.stats.skipped(skipMalformed)
				m.log.Debug("record without a method skipped", "partition", r.msg.Partition, "offset", r.msg.Offset, "err", err)
				if m.cfg.DeadLetterTopic != "" {
					return m.deadLetter(ctx, r, err.Error())
				}
				return true
			}
			if !m.methods[method] {
				m.stats.skipped(skipFiltered)
				return true
			}
		}
	}
	start := time.Now()
	first := m.pusher.start()
	base := time.Duration(m.cfg.FailRetryIntervalMs) * time.Millisecond
	ceiling := time.Duration(m.cfg.MaxRetryIntervalMs) * time.Millisecond
	for n := 0; ; n++ {
		backend := (first + n) % len(m.pusher.backends)
		a := m.pusher.push(backend, r, buf)
		v, reason := judge(a)
		switch v {
		case pushed:
			m.stats.pushed(time.Since(start))
			return true
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
		m.stats.retried()
		wait := max(backoff(n+1, base, ceiling), a.retryAfter)
		level, msg := slog.LevelWarn, "push failed; retrying"
		if v == permanent {
			level, msg = slog.LevelError, "push refused and no dead_letter_topic; retrying"
		}
		m.log.Log(ctx, level, msg, "partition", r.msg.Partition, "offset", r.msg.Offset,
			"backend", m.pusher.backends[backend].Addr, "attempt", n+1, "reason", reason, "wait", wait)
		if !sleep(ctx, wait) {
			return false
		}
	}
}

// giveUp reports a record that will not be pushed: logged, counted, and
// written to the dead-letter topic when there is one.
func (m *module) giveUp(ctx context.Context, r *record, reason string, attempts int) bool {
	m.stats.failed()
	m.log.Error("record given up", "partition", r.msg.Partition, "offset", r.msg.Offset,
		"key", string(r.msg.Key), "attempts", attempts, "reason", reason, "dead_letter_topic", m.cfg.DeadLetterTopic)
	if m.cfg.DeadLetterTopic == "" {
		return true
	}
	return m.deadLetter(ctx, r, reason)
}

// deadLetter writes r to the dead-letter topic, retrying until it is
// written or ctx ends: a record is acknowledged only once it is safe.
func (m *module) deadLetter(ctx context.Context, r *record, reason string) bool {
	headers := []kgo.RecordHeader{
		{Key: "ktransfer-module", Value: []byte(m.cfg.Name)},
		{Key: "ktransfer-reason", Value: []byte(reason)},
		{Key: "ktransfer-topic", Value: []byte(r.msg.Topic)},
		{Key: "ktransfer-partition", Value: []byte(strconv.Itoa(int(r.msg.Partition)))},
		{Key: "ktransfer-offset", Value: []byte(strconv.FormatInt(r.msg.Offset, 10))},
	}
	var key []byte
	if len(r.msg.Key) > 0 {
		key = r.msg.Key
	}
	for n := 1; ; n++ {
		// Acknowledged by every in-sync replica, idempotent (kgo's
		// defaults); a write not done within deadLetterTimeout is retried
		// here. A record is not reused: kgo writes into it.
		rec := &kgo.Record{Topic: m.cfg.DeadLetterTopic, Key: key, Value: r.msg.Value, Headers: headers}
		err := m.t.client.ProduceSync(ctx, rec).FirstErr()
		if err == nil {
			m.stats.deadLettered()
			return true
		}
		m.log.Error("dead-letter write failed; retrying", "dead_letter_topic", m.cfg.DeadLetterTopic,
			"partition", r.msg.Partition, "offset", r.msg.Offset, "attempt", n, "err", err)
		if !sleep(ctx, backoff(n, time.Second, 30*time.Second)) {
			return false
		}
	}
}

func (m *module) kickCommit() {
	select {
	case m.commitKick <- struct{}{}:
	default:
	}
}

// commitLoop commits offsets whenever a commit point moves (one write in
// flight at a time), and at least every zk_offset_update_interval_sec (1 s
// when unset), until ctx ends.
func (m *module) commitLoop(ctx context.Context) {
	every := time.Second
	if s := m.cfg.ZKOffsetUpdateIntervalS; s > 0 {
		every = time.Duration(s) * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.commitKick:
		case <-t.C:
		case <-ctx.Done():
			return
		}
		m.commitAll()
	}
}

// commitAll stores every partition's commit point that moved, in one
// ZooKeeper transaction, and frees the window slots of the records it covers.
func (m *module) commitAll() {
	m.commitMu.Lock()
	defer m.commitMu.Unlock()
	m.commitAllLocked()
}

func (m *module) commitAllLocked() {
	type part struct {
		id      int32
		t       *tracker
		offset  int64
		records int
	}
	m.mu.Lock()
	parts := make([]part, 0, len(m.parts))
	for _, p := range m.parts {
		if p.tracker != nil {
			parts = append(parts, part{id: p.id, t: p.tracker})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(parts, func(a, b part) int { return int(a.id - b.id) })
	var due []part
	for _, p := range parts {
		if offset, records, ok := p.t.toCommit(); ok {
			p.offset, p.records = offset, records
			due = append(due, p)
		}
	}
	if len(due) == 0 {
		return
	}
	offsets := make(map[int32]int64, len(due))
	for _, p := range due {
		offsets[p.id] = p.offset
	}
	start := time.Now()
	err := m.t.storeOffsets(m.cfg.Name, m.cfg.Topic, offsets)
	m.stats.commitTook(time.Since(start))
	if err != nil {
		m.log.Warn("commit offsets failed; will retry", "offsets", offsets, "err", err)
		return
	}
	for _, p := range due {
		p.t.committedAt(p.offset, p.records)
		m.uncommitted.Add(-int64(p.records))
		for range p.records {
			<-m.slots
		}
		m.stats.committed(p.id, p.offset)
	}
	m.reader.signal() // slots are free: reading goes on
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

// storeOffsets writes the next offsets to push of module/topic's
// partitions in the classic layout, in one transaction (one disk sync on the
// ZooKeeper side), creating the nodes the first time.
func (t *Transfer) storeOffsets(module, topic string, next map[int32]int64) error {
	dir := zklayout.Offsets(t.cfg.ZKChroot, module, topic)
	ops := make([]any, 0, len(next))
	for p, off := range next {
		ops = append(ops, &zk.SetDataRequest{Path: path.Join(dir, strconv.Itoa(int(p))), Data: zklayout.EncodeOffset(off), Version: -1})
	}
	_, err := t.conn().Multi(ops...)
	if err == nil {
		return nil
	}
	// A node is missing (first commit of a partition): create, then set.
	if err := zklayout.CreateAll(t.conn(), dir, t.acl); err != nil {
		return err
	}
	for p, off := range next {
		node := path.Join(dir, strconv.Itoa(int(p)))
		data := zklayout.EncodeOffset(off)
		_, err := t.conn().Set(node, data, -1)
		if errors.Is(err, zk.ErrNoNode) {
			_, err = t.conn().Create(node, data, 0, t.acl)
			if errors.Is(err, zk.ErrNodeExists) {
				_, err = t.conn().Set(node, data, -1)
			}
		}
		if err != nil {
			return fmt.Errorf("store offset %s=%d: %w", node, off, err)
		}
	}
	return nil
}

// loadOffset reads the stored next offset; ok is false when none is stored.
func (t *Transfer) loadOffset(module, topic string, partition int32) (int64, bool, error) {
	p := path.Join(zklayout.Offsets(t.cfg.ZKChroot, module, topic), strconv.Itoa(int(partition)))
	data, _, err := t.conn().Get(p)
	if errors.Is(err, zk.ErrNoNode) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read offset %s: %w", p, err)
	}
	v, err := zklayout.ParseOffset(data)
	if err != nil {
		return 0, false, fmt.Errorf("offset %s: %w", p, err)
	}
	return v, true, nil
}
