package ktransfer

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

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
	Took           time.Duration
}

func (r ReplayReport) String() string {
	return fmt.Sprintf("replayed %d, given up %d, skipped %d, other modules' %d, without original headers %d, in %v",
		r.Replayed, r.GivenUp, r.Skipped, r.Others, r.WithoutHeaders, r.Took.Round(time.Millisecond))
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
	defer func() {
		for _, b := range p.backends {
			b.CloseIdleConnections()
		}
	}()
	log = log.With("module", name, "dead_letter_topic", mc.DeadLetterTopic)
	m := &module{cfg: mc, log: log, pusher: p, methods: methodSet(mc), stats: newMetrics().module(name), replaying: true}
	m.limiter, m.breakers = newLimiter(mc), newBreakers(mc, m.stats) // the module's limit and breakers hold for a replay too

	brokers, err := replayBrokers(cfg, log)
	if err != nil {
		return rep, err
	}
	opts, err := cfg.Kafka.Opts("ktransfer", brokers, log)
	if err != nil {
		return rep, err
	}
	cl, err := kgo.NewClient(append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return rep, fmt.Errorf("kafka client for %v: %w", brokers, err)
	}
	defer cl.Close()
	from, ends, err := replayRange(ctx, kadm.NewClient(cl), mc.DeadLetterTopic, since)
	if err != nil {
		return rep, fmt.Errorf("kafka %v: %w", brokers, err)
	}
	consume := map[int32]kgo.Offset{}
	for part, end := range ends {
		if from[part] < end {
			consume[part] = kgo.NewOffset().At(from[part])
		}
	}
	log.Info("replaying dead letters", "partitions", len(consume), "since", since)

	var pushed, givenUp, skipped atomic.Int64
	work := make([]chan *record, max(1, mc.WorkerNum))
	var workers sync.WaitGroup
	for w := range work {
		work[w] = make(chan *record, 16)
		workers.Go(func() {
			var buf []byte
			for r := range work[w] {
				switch m.handle(ctx, r, &buf) {
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
		moved := time.Now()            // when a poll last delivered something of a partition still read
		fetchErrs := map[int32]error{} // a partition's fetch error since its last record
		for len(consume) > 0 {
			quiet := time.Since(moved)
			if quiet >= replayQuiet {
				return replayQuietEnd(log, consume, ends, fetchErrs, quiet)
			}
			pollCtx, cancel := context.WithTimeout(ctx, replayQuiet-quiet)
			fs := cl.PollFetches(pollCtx)
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var err error
			progressed := false
			fs.EachPartition(func(p kgo.FetchTopicPartition) {
				end := ends[p.Partition]
				if _, reading := consume[p.Partition]; !reading || err != nil {
					return // (the poll's own timeout comes as partition -1)
				}
				if p.Err != nil {
					log.Warn("reading the dead-letter topic", "partition", p.Partition, "err", p.Err)
					fetchErrs[p.Partition] = p.Err
					return
				}
				for _, rec := range p.Records {
					// Done once the position reaches the end: a record
					// or control record at end-1 or past it. The one at
					// end-1 may never come (an aborted transaction's, or
					// deleted), hence the quiet bound above.
					progressed = true
					delete(fetchErrs, p.Partition)
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
					delete(consume, p.Partition) // retention deleted what was left below the end
				}
			})
			if err != nil {
				return err
			}
			if progressed {
				moved = time.Now() // after the hand-off: slow workers do not count as quiet
			}
		}
		return nil
	}()
	for _, ch := range work {
		close(ch)
	}
	workers.Wait()
	rep.Replayed, rep.GivenUp, rep.Skipped = int(pushed.Load()), int(givenUp.Load()), int(skipped.Load())
	rep.Took = time.Since(start)
	if readErr != nil {
		return rep, fmt.Errorf("replay of %s stopped: %w", mc.DeadLetterTopic, readErr)
	}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("replay of %s stopped: %w", mc.DeadLetterTopic, err)
	}
	return rep, nil
}

// replayQuiet bounds how long a replay waits for a partition that
// delivers nothing more below its end: what is left there was aborted or
// deleted (a committed record below the end is always readable at once).
var replayQuiet = 10 * time.Second

// replayQuietEnd ends a replay whose partitions left delivered nothing for
// quiet: done, with a warning, unless fetching them failed meanwhile.
func replayQuietEnd(log *slog.Logger, consume map[int32]kgo.Offset, ends map[int32]int64, fetchErrs map[int32]error, quiet time.Duration) error {
	for part := range consume {
		if err := fetchErrs[part]; err != nil {
			return fmt.Errorf("partition %d: nothing read below its end %d for %v: %w", part, ends[part], quiet.Round(time.Millisecond), err)
		}
		log.Warn("nothing more below the end of the partition; the rest is aborted or deleted", "partition", part, "end", ends[part], "waited", quiet.Round(time.Millisecond))
	}
	return nil
}

// replayOne hands one dead letter to its key's worker, or counts it.
func replayOne(ctx context.Context, rec *kgo.Record, mc Module, log *slog.Logger, work []chan *record, next *int, rep *ReplayReport, skipped *atomic.Int64) error {
	r, mine := deadLetterOrigin(rec, mc)
	switch {
	case !mine:
		rep.Others++
		return nil
	case r == nil:
		log.Warn("dead letter of another topic or without its origin headers; skipped", "partition", rec.Partition, "offset", rec.Offset)
		skipped.Add(1)
		return nil
	case mc.Protocol.TargetHeader != "" && len(r.msg.Headers) == 0:
		// Written before dead letters kept the record's headers: its
		// target, if it had one, is lost. Warned once, counted always.
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

// replayBrokers is broker_hosts, or the brokers registered in ZooKeeper
// (read only; the session ends at once).
func replayBrokers(cfg Config, log *slog.Logger) ([]string, error) {
	if len(cfg.BrokerHosts) > 0 {
		return cfg.BrokerHosts, nil
	}
	conn, _, err := connectZK(cfg, zkLog{log, new(atomic.Int64)})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	brokers, err := zklayout.DiscoverBrokers(conn, cfg.ZKChroot)
	if err != nil {
		return nil, fmt.Errorf("discover brokers (set broker_hosts for KRaft clusters): %w", err)
	}
	if len(brokers) == 0 {
		return nil, fmt.Errorf("no broker registered under %s; set broker_hosts", zklayout.BrokerIDs(cfg.ZKChroot))
	}
	return brokers, nil
}

// replayRange lists where each partition of topic is read from (its
// start, or the first record at or after since) and up to (its last
// stable offset now).
func replayRange(ctx context.Context, adm *kadm.Client, topic string, since time.Time) (from, ends map[int32]int64, err error) {
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
	if ends, err = list("end", func() (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, topic) }); err != nil {
		return nil, nil, err
	}
	if since.IsZero() {
		from, err = list("start", func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, topic) })
	} else {
		from, err = list("-since", func() (kadm.ListedOffsets, error) { return adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic) })
	}
	return from, ends, err
}

// deadLetterOrigin rebuilds the record a dead letter was made from (see
// module.deadLetter): the origin's topic, partition and offset from the
// ktransfer-* headers, its own headers, key and value. mine is false for
// another module's dead letter (one naming another in ktransfer-module);
// the record is nil when the origin headers are missing (ktransfer-module
// among them) or unreadable.
func deadLetterOrigin(rec *kgo.Record, mc Module) (r *record, mine bool) {
	orig := &kgo.Record{Key: rec.Key, Value: rec.Value, Topic: mc.Topic, Partition: -1, Offset: -1}
	module, hasModule := "", false
	for _, h := range rec.Headers {
		name, ours := strings.CutPrefix(h.Key, "ktransfer-")
		if !ours {
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
			var n int
			n, err = strconv.Atoi(string(h.Value))
			orig.Partition = int32(n)
		case "offset":
			orig.Offset, err = strconv.ParseInt(string(h.Value), 10, 64)
		}
		if err != nil {
			orig.Offset = -1
		}
	}
	if !hasModule {
		return nil, true // no origin at all: skipped, not another module's
	}
	if module != mc.Name {
		return nil, false
	}
	if orig.Partition < 0 || orig.Offset < 0 || orig.Topic != mc.Topic {
		return nil, true
	}
	return &record{msg: orig}, true
}
