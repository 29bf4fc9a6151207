package ktransfer

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// deletedBeforeRead counts and logs the offsets from to to (excluded) of
// a dead-letter topic's partition that Kafka deleted before the replay read
// them, when there are any, and returns the position after them.
func deletedBeforeRead(log *slog.Logger, rep *ReplayReport, partition int32, from, to int64) int64 {
	if to <= from {
		return from
	}
	rep.Deleted += to - from
	log.Error("dead letters deleted before the replay read them (retention, or records deleted): lost",
		"partition", partition, "from", from, "to", to, "count", to-from)
	return to
}

// ReplayReport is what Replay did.
type ReplayReport struct {
	Replayed int // pushed: a backend answered 2xx
	GivenUp  int // refused or out of retries again; still in the dead-letter topic
	Skipped  int // not pushed: filtered out by methods, no method to match, or no origin headers
	Others   int // other modules' dead letters in a shared topic
	// WithoutHeaders counts those replayed without the record's own
	// headers while the module has target_header: written before dead
	// letters kept them, they go to the module's uri (also counted in
	// Replayed, GivenUp or Skipped).
	WithoutHeaders int
	// WithoutValue counts this module's dead letters written without the
	// record's value (ktransfer-value-omitted: Kafka refused the whole
	// record): not pushed, since an empty body is not the record; each is
	// logged with the record's topic, partition and offset, where its value
	// is. Also counted in Skipped.
	WithoutValue int
	// PastEnd counts the offsets above the end (the last stable offset
	// listed at the start) up to the high watermark: records of a
	// transaction still open, or written since; not read.
	PastEnd int64
	// Deleted counts the offsets below the end that Kafka no longer held
	// when the replay came to read them (retention, or DeleteRecords,
	// moved the log start past them): lost, each range logged.
	Deleted int64
	// Unfinished are the partitions that did not deliver their committed
	// dead letters below the end in time (the replay's error names them).
	Unfinished []UnfinishedPartition
	Took       time.Duration
}

func (r ReplayReport) String() string {
	s := fmt.Sprintf("replayed %d, given up %d, skipped %d, other modules' %d, without original headers %d, without value %d, past the end %d, deleted before read %d, in %v",
		r.Replayed, r.GivenUp, r.Skipped, r.Others, r.WithoutHeaders, r.WithoutValue, r.PastEnd, r.Deleted, r.Took.Round(time.Millisecond))
	for _, u := range r.Unfinished {
		s += fmt.Sprintf("; partition %d unfinished at %d of %d", u.Partition, u.Position, u.End)
	}
	return s
}

// Replay pushes module name's dead letters to its backends again, with
// its retries, uri template, methods filter, signing and targets: those
// written to its dead_letter_topic from since on (from the beginning when
// since is zero) up to the topic's end when Replay starts. Each is pushed
// as the original record (key, value, headers, topic, partition and
// offset), without X-Ktransfer-Epoch and with X-Ktransfer-Replay: 1; one
// key's dead letters are pushed in order. A record given up on again stays
// where it is and is not written again. Replay reads ZooKeeper only to
// discover the brokers (without broker_hosts): it stores no offset and
// claims no partition, so it runs beside the fleet.
func Replay(ctx context.Context, cfg Config, name string, since time.Time, log *slog.Logger) (ReplayReport, error) {
	start := time.Now()
	var rep ReplayReport
	i := slices.IndexFunc(cfg.Modules, func(m Module) bool { return m.Name == name })
	if i < 0 {
		return rep, fmt.Errorf("-replay-dead-letters %s: no such module in module_enabled %q", name, cfg.ModuleEnabled)
	}
	mc := cfg.Modules[i]
	if mc.DeadLetterTopic == "" {
		return rep, fmt.Errorf("-replay-dead-letters %s: %s sets no dead_letter_topic: there is nothing to replay", name, mc.File)
	}
	p, err := newPusher(mc)
	if err != nil {
		return rep, err
	}
	defer p.closeIdle()
	log = log.With("module", name, "dead_letter_topic", mc.DeadLetterTopic)
	m := &module{cfg: mc, log: log, pusher: p, methods: methodSet(mc), stats: newMetrics().module(name), replaying: true}
	m.limiter, m.breakers = newLimiter(mc), newBreakers(mc, m.stats) // the module's limit and breakers hold for a replay too

	brokers, err := replayBrokers(ctx, cfg, log)
	if err != nil {
		return rep, err
	}
	opts, err := cfg.Kafka.Opts("ktransfer", brokers, log)
	if err != nil {
		return rep, err
	}
	cl, err := kgo.NewClient(append(fetchOpts(slices.Clip(opts), mc), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return rep, fmt.Errorf("kafka client for %v: %w", brokers, err)
	}
	defer cl.Close()
	probe, err := kgo.NewClient(opts...)
	if err != nil {
		return rep, fmt.Errorf("kafka client for %v: %w", brokers, err)
	}
	defer probe.Close()
	from, ends, highs, err := replayRange(ctx, kadm.NewClient(cl), mc.DeadLetterTopic, since)
	if err != nil {
		return rep, fmt.Errorf("kafka %v: %w", brokers, err)
	}
	consume := map[int32]kgo.Offset{}
	for part, end := range ends {
		if from[part] < end {
			consume[part] = kgo.NewOffset().At(from[part])
		}
		if high := highs[part]; high > end {
			rep.PastEnd += high - end
			log.Warn("records past the end (a transaction still open, or written since) are not replayed; replay them later with -since",
				"partition", part, "end", end, "high_watermark", high)
		}
	}
	log.Info("replaying dead letters", "partitions", len(consume), "since", since)

	var pushed, givenUp, skipped atomic.Int64
	// The workers' context: ended by an interrupt, or when the replay gives
	// up reading (then its queued records are not pushed and its retries
	// stop, as at an interrupt).
	pushCtx, stopPushes := context.WithCancel(ctx)
	defer stopPushes()
	work := make([]chan *record, max(1, mc.WorkerNum))
	var workers sync.WaitGroup
	for w := range work {
		work[w] = make(chan *record, 16)
		workers.Go(func() {
			var buf []byte
			for r := range work[w] {
				switch m.handle(pushCtx, r, &buf) {
				case outPushed:
					pushed.Add(1)
				case outGivenUp:
					givenUp.Add(1)
				case outSkipped:
					skipped.Add(1)
				}
			}
		})
	}
	readErr := func() error {
		if len(consume) == 0 {
			return nil
		}
		cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{mc.DeadLetterTopic: consume})
		next := 0
		pos := map[int32]int64{} // a partition's next offset: the last delivered + 1
		for part := range consume {
			pos[part] = from[part]
		}
		moved := time.Now()            // when a poll last delivered something of a partition still read
		checked := moved               // when the partitions left were last checked (replayCheck)
		fetchErrs := map[int32]error{} // a partition's fetch error since its last record
		failed := 0                    // polls in a row that brought fetch errors and no record
		lastPoll := false              // stalled: the polls until the next check decide
		for len(consume) > 0 {
			if time.Since(checked) >= replayQuiet {
				if lastPoll {
					// A whole poll window after the check, nothing of the
					// partitions still read came (a poll that came back
					// early with records past the end, or of partitions
					// done, did not end it).
					return replayUnfinished(&rep, consume, pos, ends, fetchErrs, time.Since(moved))
				}
				replayCheck(ctx, probe, log, &rep, mc.DeadLetterTopic, consume, pos, ends, time.Since(moved))
				checked = time.Now()
				if len(consume) == 0 {
					break
				}
				// Not given up at once: the check may have taken long (a
				// slow leader per partition, 10 s each at most), while
				// the client fetched what was waited for: the polls until
				// the next check decide.
				lastPoll = time.Since(moved) >= replayStall
			}
			pollCtx, cancel := context.WithTimeout(ctx, replayQuiet-time.Since(checked))
			fs := cl.PollFetches(pollCtx)
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var err error
			progressed, errored := false, false
			fs.EachPartition(func(p kgo.FetchTopicPartition) {
				end := ends[p.Partition]
				if _, reading := consume[p.Partition]; !reading || err != nil {
					return // (the poll's own timeout comes as partition -1)
				}
				if p.Err != nil {
					// The client retries; what it could not fetch is
					// waited for (replayCheck) and named at the end. The
					// records that came with the error (the good batches
					// before a corrupt one) are pushed: the client reads on
					// after them.
					log.Warn("reading the dead-letter topic", "partition", p.Partition, "err", p.Err)
					errored = true
					defer func() { fetchErrs[p.Partition] = p.Err }() // after its records, which clear it
				}
				for _, rec := range p.Records {
					if rec.Offset > pos[p.Partition] {
						// Kafka's client moved on to the log start by
						// itself (an out-of-range answer): what lay
						// between was deleted before it was read.
						pos[p.Partition] = deletedBeforeRead(log, &rep, p.Partition, pos[p.Partition], min(rec.Offset, p.LogStartOffset, end))
					}
					// Done once the position reaches the end: a record
					// or control record at end-1 or past it. The one at
					// end-1 may never come (an aborted transaction's, or
					// deleted): replayCheck finds that out.
					progressed = true
					delete(fetchErrs, p.Partition)
					if rec.Offset < pos[p.Partition] {
						// Read again: the client went back (a broker's
						// OFFSET_OUT_OF_RANGE for an offset Kafka has
						// resets it to the start, or to the time of the
						// last record read). Pushed already, or before
						// -since.
						continue
					}
					pos[p.Partition] = rec.Offset + 1
					if rec.Offset >= end-1 {
						delete(consume, p.Partition)
					}
					if rec.Offset >= end || rec.Attrs.IsControl() {
						continue
					}
					if err = replayOne(ctx, rec, mc, log, work, &next, &rep, &skipped); err != nil {
						return
					}
				}
				if p.LogStartOffset >= end {
					// Retention deleted what was left below the end.
					if _, reading := consume[p.Partition]; reading {
						pos[p.Partition] = deletedBeforeRead(log, &rep, p.Partition, pos[p.Partition], end)
					}
					delete(consume, p.Partition)
				}
			})
			if err != nil {
				return err
			}
			if progressed {
				lastPoll = false
			}
			switch {
			case progressed:
				moved = time.Now() // after the hand-off: slow workers do not count as quiet
				checked = moved
				failed = 0
			case errored:
				// An error the client does not retry by itself (no read
				// permission, ...) comes back at once: asked again after a
				// growing wait, not thousands of times a second.
				failed++
				if !sleep(ctx, backoff(failed, 100*time.Millisecond, time.Second)) {
					return ctx.Err()
				}
			}
		}
		return nil
	}()
	if readErr != nil {
		stopPushes() // the replay gave up: it stops as when interrupted
	}
	for _, ch := range work {
		close(ch)
	}
	stopped := make(chan struct{})
	go func() {
		workers.Wait()
		close(stopped)
	}()
	abandoned := false
	select {
	case <-stopped:
	case <-pushCtx.Done():
		// Interrupted, or given up: the pushes in progress get
		// shutdown_timeout_ms, as at a daemon's stop. One without a read
		// timeout may never end.
		select {
		case <-stopped:
		case <-time.After(time.Duration(cfg.ShutdownTimeoutMs) * time.Millisecond):
			abandoned = true
			// Closing their connections ends them, as a module's stop
			// does: else they held their connections and goroutines
			// until the process exited.
			p.closeAll()
			select {
			case <-stopped:
			case <-time.After(time.Second):
			}
		}
	}
	rep.Replayed, rep.GivenUp, rep.Skipped = int(pushed.Load()), int(givenUp.Load()), int(skipped.Load())
	rep.Took = time.Since(start)
	err = readErr
	if err == nil {
		err = ctx.Err()
	}
	switch {
	case err != nil && abandoned:
		return rep, fmt.Errorf("replay of %s stopped: %w; the pushes still in progress after shutdown_timeout_ms were abandoned", mc.DeadLetterTopic, err)
	case err != nil:
		return rep, fmt.Errorf("replay of %s stopped: %w", mc.DeadLetterTopic, err)
	}
	return rep, nil
}

// replayQuiet is how long a replay polls a partition that delivers
// nothing more below its end before it checks, with the broker, whether
// committed records are left there (replayCheck); replayStall is how long
// it waits for them before it gives up with an error.
var (
	replayQuiet = 10 * time.Second
	replayStall = 2 * time.Minute
)

// replayCheck asks the broker about each partition in consume that has
// delivered nothing for quiet: one whose rest below its end is aborted
// transactions' records, transaction markers or deleted is finished and
// leaves consume, what was deleted before the replay read it counted in
// rep (deletedBeforeRead); one with committed records left, or that cannot
// be checked (the broker slow or away), is read on. probe is a client of
// its own: the reading client's connection may be held by a long poll.
func replayCheck(ctx context.Context, probe *kgo.Client, log *slog.Logger, rep *ReplayReport, topic string, consume map[int32]kgo.Offset, pos, ends map[int32]int64, quiet time.Duration) {
	for part := range consume {
		attrs := []any{"partition", part, "position", pos[part], "end", ends[part], "quiet", quiet.Round(time.Millisecond)}
		switch left, gaps, err := committedLeft(ctx, probe, topic, part, pos[part], ends[part]); {
		case err != nil:
			log.Warn("nothing read below the end of the partition, and the broker cannot tell what is left; waiting", append(attrs, "err", err)...)
		case left:
			log.Warn("committed dead letters below the end of the partition not delivered yet; waiting", attrs...)
		default:
			for _, g := range gaps {
				deletedBeforeRead(log, rep, part, g[0], g[1])
			}
			log.Info("the rest of the partition below its end is aborted or deleted", attrs...)
			delete(consume, part)
		}
	}
}

// UnfinishedPartition is a partition of the dead-letter topic a replay
// could not read up to its end.
type UnfinishedPartition struct {
	Partition     int32
	Position, End int64 // the next offset to read, the end listed at the start
}

// replayUnfinished records the partitions left in consume in rep and
// returns the error that ends the replay.
func replayUnfinished(rep *ReplayReport, consume map[int32]kgo.Offset, pos, ends map[int32]int64, fetchErrs map[int32]error, stalled time.Duration) error {
	var errs []error
	for _, part := range slices.Sorted(maps.Keys(consume)) {
		rep.Unfinished = append(rep.Unfinished, UnfinishedPartition{part, pos[part], ends[part]})
		reason := "the broker did not deliver them"
		if err := fetchErrs[part]; err != nil {
			reason = err.Error()
		}
		errs = append(errs, fmt.Errorf("partition %d: dead letters from offset %d below the end %d not read for %v: %s",
			part, pos[part], ends[part], stalled.Round(time.Second), reason))
	}
	return errors.Join(errs...)
}

// committedLeft fetches partition part of topic from pos as a
// read_committed reader would, from its leader, and says whether a
// committed record lies below end: false when what is there is only
// aborted transactions' records, transaction markers, or deleted. gaps
// are the ranges of offsets [from, to) it found deleted (the log start
// above where it was; what it read between them is not in them). A failed
// fetch is an error: nothing can be said.
func committedLeft(ctx context.Context, cl *kgo.Client, topic string, part int32, pos, end int64) (left bool, gaps [][2]int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, min(kafkaTimeout, replayQuiet))
	defer cancel()
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		return true, nil, err
	}
	td := md.Topics[topic]
	pd, ok := td.Partitions[part]
	switch {
	case td.Err != nil:
		return true, nil, td.Err
	case !ok:
		return true, nil, fmt.Errorf("no partition %d in the metadata", part)
	case pd.Err != nil:
		return true, nil, pd.Err
	}
	for pos < end {
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes, req.IsolationLevel, req.SessionEpoch = -1, 0, 0, 1<<20, 1, -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = topic, td.ID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = part, pos, 1<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := cl.Broker(int(pd.Leader)).Request(ctx, req)
		if err != nil {
			return true, nil, err
		}
		fr := resp.(*kmsg.FetchResponse)
		if err := kerr.ErrorForCode(fr.ErrorCode); err != nil {
			return true, nil, err
		}
		var got *kmsg.FetchResponseTopicPartition
		for i := range fr.Topics {
			for j := range fr.Topics[i].Partitions {
				if fr.Topics[i].Partitions[j].Partition == part {
					got = &fr.Topics[i].Partitions[j]
				}
			}
		}
		switch {
		case got == nil:
			return true, nil, fmt.Errorf("fetch of partition %d: not in the answer", part)
		case got.LogStartOffset > pos:
			// Deleted from pos (retention, or records deleted); at the
			// end or past it, the whole rest below the end.
			to := min(got.LogStartOffset, end)
			gaps = append(gaps, [2]int64{pos, to})
			pos = to
			continue
		}
		if err := kerr.ErrorForCode(got.ErrorCode); errors.Is(err, kerr.OffsetOutOfRange) {
			// Below the log start, as a rule (pos is below the end): Kafka
			// does not say where the log starts in this answer (-1), so it
			// is asked.
			start, lerr := logStart(ctx, cl, topic, part)
			if lerr != nil {
				return true, nil, fmt.Errorf("fetch of partition %d at %d: %w; log start: %w", part, pos, err, lerr)
			}
			if start <= pos {
				return true, nil, fmt.Errorf("fetch of partition %d at %d: %w (log start %d)", part, pos, err, start)
			}
			to := min(start, end)
			gaps = append(gaps, [2]int64{pos, to})
			pos = to
			continue
		} else if err != nil {
			return true, nil, fmt.Errorf("fetch of partition %d at %d: %w", part, pos, err)
		}
		next, left := committedIn(got.RecordBatches, got.AbortedTransactions, pos, end)
		if left || next == pos {
			return true, nil, nil // a committed record, or nothing delivered below the end: not finished
		}
		pos = next
	}
	return false, gaps, nil
}

// logStart asks for the log-start offset of partition part of topic.
func logStart(ctx context.Context, cl *kgo.Client, topic string, part int32) (int64, error) {
	listed, err := kadm.NewClient(cl).ListStartOffsets(ctx, topic)
	if err != nil {
		return 0, err
	}
	o, ok := listed.Lookup(topic, part)
	switch {
	case !ok:
		return 0, fmt.Errorf("no partition %d in the answer", part)
	case o.Err != nil:
		return 0, o.Err
	}
	return o.Offset, nil
}

// committedIn walks the record batches of one fetch answer from pos as
// a read_committed reader (kgo's rule): a transactional batch is aborted
// from the first offset of an aborted transaction of its producer until
// that producer's next marker. It stops at the first batch holding a
// committed record below end (left) and otherwise returns the offset
// after the last batch it could read.
func committedIn(raw []byte, aborted []kmsg.FetchResponseTopicPartitionAbortedTransaction, pos, end int64) (next int64, left bool) {
	slices.SortFunc(aborted, func(a, b kmsg.FetchResponseTopicPartitionAbortedTransaction) int {
		return cmp.Compare(a.FirstOffset, b.FirstOffset)
	})
	aborting := map[int64]bool{}
	for len(raw) >= 12 && pos < end {
		size := 12 + int(int32(binary.BigEndian.Uint32(raw[8:12])))
		if size <= 12 || size > len(raw) {
			break // the last batch cut short by the size limit
		}
		var b kmsg.RecordBatch
		if err := b.ReadFrom(raw[:size]); err != nil || b.Magic != 2 {
			return pos, true // unreadable, or the old format without transactions: counted as committed
		}
		raw = raw[size:]
		last := b.FirstOffset + int64(b.LastOffsetDelta)
		for len(aborted) > 0 && aborted[0].FirstOffset <= last {
			aborting[aborted[0].ProducerID] = true
			aborted = aborted[1:]
		}
		if last < pos {
			continue
		}
		if b.FirstOffset >= end {
			return end, false
		}
		control, transactional := b.Attributes&0x20 != 0, b.Attributes&0x10 != 0
		switch {
		case control:
			delete(aborting, b.ProducerID) // a marker ends its producer's transaction
		case transactional && aborting[b.ProducerID]:
		case b.NumRecords > 0:
			return pos, true
		}
		pos = last + 1
	}
	return pos, false
}

// replayOne hands one dead letter to its key's worker, or counts it.
func replayOne(ctx context.Context, rec *kgo.Record, mc Module, log *slog.Logger, work []chan *record, next *int, rep *ReplayReport, skipped *atomic.Int64) error {
	r, mine := deadLetterOrigin(rec, mc)
	switch {
	case !mine:
		rep.Others++
		return nil
	case r == nil:
		log.Warn("dead letter of another topic, or without its origin headers or with one unreadable; skipped", "partition", rec.Partition, "offset", rec.Offset)
		skipped.Add(1)
		return nil
	case slices.ContainsFunc(rec.Headers[originAt(rec.Headers):], func(h kgo.RecordHeader) bool { return h.Key == hdrValueOmitted }):
		// Pushing the empty value as if it were the record would deliver
		// something the record never said.
		rep.WithoutValue++
		skipped.Add(1)
		log.Warn("dead letter without the record's value; skipped: the value is in the record's own topic",
			"partition", rec.Partition, "offset", rec.Offset, "topic", r.msg.Topic, "record_partition", r.msg.Partition, "record_offset", r.msg.Offset)
		return nil
	case mc.Protocol.TargetHeader != "" && len(r.msg.Headers) == 0 &&
		!slices.ContainsFunc(rec.Headers[originAt(rec.Headers):], func(h kgo.RecordHeader) bool { return h.Key == hdrHeaders }):
		// Written before dead letters kept the record's headers (none
		// says how many it kept): its target, if it had one, is lost.
		// Warned once, counted always.
		lvl := slog.LevelDebug
		if rep.WithoutHeaders == 0 {
			lvl = slog.LevelWarn
		}
		rep.WithoutHeaders++
		log.Log(ctx, lvl, "dead letter without the record's own headers: pushed to the module's uri, not to a target", "partition", rec.Partition, "offset", rec.Offset)
	}
	// One key's dead letters go to one worker, in order.
	w := *next % len(work)
	if len(r.msg.Key) > 0 {
		h := fnv.New32a()
		h.Write(r.msg.Key)
		w = int(h.Sum32() % uint32(len(work)))
	} else {
		*next++
	}
	select {
	case work[w] <- r:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// originAt is the index of the first of the headers module.deadLetter
// appended (from the last ktransfer-module on), len(headers) when there is
// none. Those before it are the record's own, even when their names begin
// with ktransfer- (a client chooses a record's headers).
func originAt(headers []kgo.RecordHeader) int {
	for i := len(headers) - 1; i >= 0; i-- {
		if headers[i].Key == "ktransfer-module" {
			return i
		}
	}
	return len(headers)
}

// replayBrokers is broker_hosts, or the brokers registered in ZooKeeper
// (read only; the session ends at once).
func replayBrokers(ctx context.Context, cfg Config, log *slog.Logger) ([]string, error) {
	if len(cfg.BrokerHosts) > 0 {
		return cfg.BrokerHosts, nil
	}
	conn, _, err := connectZK(ctx, cfg, zkLog{log, new(atomic.Int64)})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return discoverBrokers(ctx, conn, cfg, log)
}

// discoverBrokers reads the brokers registered under <zk_chroot>/brokers/ids,
// each at the endpoint of the security protocol the kafka section speaks
// (a broker registers host and port of one listener only, perhaps a
// PLAINTEXT one that a TLS client cannot use). A registration that cannot
// be read is left out, with a warning: one broker of a format this does not
// know must not keep ktransfer from the others. A ZooKeeper that does not
// answer holds the reads until the client gives up on the connection (2/3
// of the session timeout): when ctx ends first (a stop during start-up)
// the reads are left to end when the caller closes conn.
func discoverBrokers(ctx context.Context, conn *zk.Conn, cfg Config, log *slog.Logger) ([]string, error) {
	type discovered struct {
		brokers      []string
		skipped, err error
	}
	answer := make(chan discovered, 1)
	go func() {
		var d discovered
		d.brokers, d.skipped, d.err = zklayout.DiscoverBrokersFor(conn, cfg.ZKChroot, cfg.Kafka.SecurityProtocol())
		answer <- d
	}()
	var d discovered
	select {
	case d = <-answer:
	case <-ctx.Done():
		return nil, fmt.Errorf("discover brokers: no answer from zookeeper yet: %w", context.Cause(ctx))
	}
	brokers, skipped, err := d.brokers, d.skipped, d.err
	if skipped != nil {
		log.Warn("broker registration skipped", "err", skipped)
	}
	if err != nil {
		return nil, fmt.Errorf("discover brokers (set broker_hosts for KRaft clusters): %w", err)
	}
	if len(brokers) == 0 {
		return nil, fmt.Errorf("no broker registered under %s; set broker_hosts", zklayout.BrokerIDs(cfg.ZKChroot))
	}
	return brokers, nil
}

// replayRange lists where each partition of topic is read from (its
// start, or the first record at or after since), up to (its last stable
// offset now), and its high watermark (past the end while a transaction
// is open).
func replayRange(ctx context.Context, adm *kadm.Client, topic string, since time.Time) (from, ends, highs map[int32]int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, kafkaTimeout)
	defer cancel()
	list := func(what string, f func() (kadm.ListedOffsets, error)) (map[int32]int64, error) {
		listed, err := f()
		if err == nil {
			err = listed.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("list %s offsets of %s: %w", what, topic, err)
		}
		out := map[int32]int64{}
		listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
		if len(out) == 0 {
			return nil, fmt.Errorf("list %s offsets of %s: no partition", what, topic)
		}
		return out, nil
	}
	// The start first: a log start moved past the end listed before it
	// (retention, DeleteRecords between the two) left from above end, the
	// partition unread and its deleted letters uncounted (exit 0). Listed
	// first, a start that moved is read as out of range, which counts them.
	// A time before 1970 is before every record; as a negative timestamp
	// Kafka would read it as a special one (-1: the end, -3: the record
	// with the largest timestamp).
	if since.IsZero() || since.UnixMilli() < 0 {
		from, err = list("start", func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, topic) })
	} else {
		from, err = list("-since", func() (kadm.ListedOffsets, error) { return adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic) })
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if ends, err = list("end", func() (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, topic) }); err != nil {
		return nil, nil, nil, err
	}
	if highs, err = list("high watermark", func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, topic) }); err != nil {
		return nil, nil, nil, err
	}
	return from, ends, highs, nil
}

// deadLetterOrigin rebuilds the record a dead letter was made from (see
// module.deadLetter): the origin's topic, partition and offset from the
// ktransfer-* headers, its own headers, key and value. mine is false for
// another module's dead letter (one naming another in ktransfer-module);
// the record is nil when the origin headers are missing (ktransfer-module
// among them) or unreadable.
func deadLetterOrigin(rec *kgo.Record, mc Module) (r *record, mine bool) {
	orig := &kgo.Record{Key: rec.Key, Value: rec.Value, Topic: mc.Topic, Partition: -1, Offset: -1}
	module, hasModule, bad := "", false, false
	at := originAt(rec.Headers)
	for i, h := range rec.Headers {
		name, ours := strings.CutPrefix(h.Key, "ktransfer-")
		if !ours || i < at {
			orig.Headers = append(orig.Headers, h)
			continue
		}
		var err error
		switch name {
		case "module":
			module, hasModule = string(h.Value), true
		case "topic":
			orig.Topic = string(h.Value)
		case "partition":
			var n int64
			n, err = strconv.ParseInt(string(h.Value), 10, 32) // past int32: unreadable, not cut to another partition
			orig.Partition = int32(n)
		case "offset":
			orig.Offset, err = strconv.ParseInt(string(h.Value), 10, 64)
		}
		if err != nil {
			bad = true // whichever header comes after
		}
	}
	if !hasModule {
		return nil, true // no origin at all: skipped, not another module's
	}
	if module != mc.Name {
		return nil, false
	}
	if bad || orig.Partition < 0 || orig.Offset < 0 || orig.Topic != mc.Topic {
		return nil, true
	}
	return &record{msg: orig}, true
}
