package kproxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// The spool (spool_dir): a record Kafka cannot take within spool_after_ms
// is appended to a local spool and answered 202; one goroutine drains the
// spool to Kafka in order.
//
// Order at the moment a topic starts spooling. Each topic has a gate. While
// the topic is not spooling, its records are handed to kgo under the gate's
// lock with the gate's generation context, and the gate keeps them in that
// order (gateRec) until kgo answers. A record not answered within
// spool_after_ms flips the gate: the topic spools (every new record of it
// goes to the spool), the generation is cancelled, and every record of the
// generation still in kgo is taken: appended to the spool in the order it
// was handed to kgo, in one Append (one fsync, all or none), answered 202
// once there, and counted in kproxy_spool_duplicates_possible_total; kgo's
// later answer for it is ignored (its promise only releases it). Records
// arriving after the flip are appended after them (the appender keeps the
// queue's order). kgo cannot fail a request already sent: a broker that
// froze keeps it until produce_timeout_ms, and records taken this way need
// not wait for it.
//
// Per-key order of first copies. A taken record may be in Kafka twice:
// from its request, when it was out and the broker writes it after all
// (a frozen broker that resumes), and from the spool. Take records A1 and
// A2 of one key, A1 handed to kgo first. They are in one partition and one
// kgo client (the acks level picks it; a key's records sent one after the
// other's answer are ordered whatever the client). kgo sends a partition's
// records in order, A1 in the same batch as A2 or in an earlier one; and
// when the first record of a partition's oldest batch has a done context
// (the cancelled generation), kgo fails every batch buffered for that
// partition (failAllRecords) rather than send them: after the flip, a
// record of the generation is only written from a request sent before it,
// or from a batch a spool=0 record (its context live) heads — a copy
// before the spool's all the same, counted as a possible duplicate.
// A request already out completes or times out, or (the acks=1 client) is
// given up when the context of its first record ends: kgo then sends its
// batches headed by a live record again, whole and in partition order, and
// fails the partitions of the others. So for A2's copy from kgo
// to be written, A2 was out before the flip, and A1 was in the same request
// or an earlier one: the idempotent client (acks -1) carries sequence
// numbers, and the broker refuses a batch before its predecessor; the
// acks=1 client has one request per broker out (max_in_flight_requests 1)
// and fails its partition's later batches rather than retry past a failed
// one; a batch retried whole keeps its own order. Hence A2 is written from
// kgo only after A1 was, from kgo or, earlier, from the spool, whose drain
// writes A1 before A2 (in order, idempotent). Any record B arriving after
// the flip goes to the spool after A1 and A2 and is drained after them;
// if kgo's copy of A1 lands after B's, it is a later copy, not the first.
// Before the flip nothing of the generation was spooled: a record kgo
// answered then (written, or refused outright) is answered as before.
//
// A record a flip took whose copy the spool refused (full, a disk error)
// is answered 504 and, while kgo has not answered it, linked in its gate
// again (relinkLocked): it holds the later records of its key as a
// spool=0 record does, below. The acks=1 client gives its request up at
// the flip (the generation is its context): its answer comes at once, and
// a broker that writes it later may write it after such records.
//
// Records with spool=0 are never spooled: they stay in kgo (their context
// is their deadline, not the generation) and keep their answer. A record of
// the same key arriving after the flip waits (held) until they are
// answered, so that it is not drained ahead of one of them that kgo still
// writes, or until its deadline and answerGrace at most (await: then it is
// refused, never spooled, unless kgo answered meanwhile); records of other
// keys do not wait. So does a record the flip takes that was handed to kgo
// after a spool=0 record of its key, for the spool=0 records of its key
// handed over before it (flipLocked, blocksLocked): the flip's group holds
// only records no spool=0 record of their key came before. One held so
// and refused at its deadline while kgo has it is linked again, as one
// the spool refused, and holds the later records of its key in turn; those
// of its key the flip held after it are refused with it (after), lest
// kgo's answer let one go while it is not written.
// Held records keep their key's order: the appender queues the records
// kgo's answer let go in their place among the queued records of their
// key (release, by seq), between two of its passes, and holds those of
// their key a pass took meanwhile (holdBlocked). While the topic spools, a
// spool=0 record is refused (spoolOvertake). The topic goes to Kafka
// directly again only when nothing of it is in kgo, waiting, or in the
// spool (Spool.Pending is 0: the drain has Kafka's acknowledgement of every
// entry).

// maxAppendGroup bounds the records of one Spool.Append (one fsync).
const maxAppendGroup = 2000

var errSpoolClosed = errors.New("spool closed")

type spooler struct {
	sp      *spool.Spool
	log     *slog.Logger
	after   *deadlines // spool_after_ms from now, shared like the records' deadlines
	afterD  time.Duration
	drainC  *kgo.Client
	m       spoolMetrics
	errLog  sampled
	readLog sampled // the drain's failed reads

	// failMu guards the latest failed append (not for want of room) and
	// when it came; a successful append clears it (healthStatus).
	failMu  sync.Mutex
	failAt  time.Time
	failErr error

	gatesMu sync.Mutex
	gates   map[string]*gate
	// saveRetryAt is when a topic's floor is saved again after a save
	// failed or was slow (drainedLocked), in Unix ns; set under saveMu.
	saveRetryAt atomic.Int64
	saveMu      sync.Mutex
	// lateSaves counts the floor saves given up on that still wait for
	// the disk (under saveMu): while one does, no other starts (a disk
	// that hangs holds them, not one more per topic and retry).
	lateSaves atomic.Int32
	// saveFloor is Spool.SaveTopic (tests wrap it).
	saveFloor func(topic string) error
	// appendRecs is Spool.Append (tests wrap it); appending is when the
	// running one began (monoNow), 0 between them (healthStatus).
	appendRecs func(recs []spool.Record) (uint64, error)
	appending  atomic.Int64
	// gatesSweep is the count of gates at which the next gate made first
	// frees those holding nothing (sweepGatesLocked).
	gatesSweep int
	// relinked counts the records a flip took whose copy the spool
	// refused, linked in their gates again until kgo answers them
	// (relinkLocked): while any is, the appender holds the records of
	// their keys (holdBlocked).
	relinked atomic.Int64
	// releasing counts the gates in releases: while any is, the appender
	// looks for records of the keys they hold too (holdBlocked).
	releasing atomic.Int64

	qmu    sync.Mutex
	queue  []*spoolItem
	closed bool
	wake   chan struct{}
	// releases are the gates with held records kgo's answer let go, for
	// the appender to queue between its passes (release; qmu).
	releases []*gate

	// drain state
	check       *topicCheck // max.message.bytes asked again after MESSAGE_TOO_LARGE
	onDrained   func(*kgo.Record, error)
	dmu         sync.Mutex
	chunk       []drainRec               // the records of the chunk in the drain client
	parked      map[string]*parkedTopic  // topics whose drain Kafka refused: their entries wait, in order
	parkedBytes int                      // of the parked entries in memory (parkBudget)
	parkBudget  int                      // maxParkedBytes; past it, or a topic's share of it, parked topics' records wait in the spool only
	readTo      uint64                   // the seq after the last entry drain took from Read (its goroutine's)
	pause       map[string]time.Duration // the next pause before a parked topic is retried
	stopped     bool                     // the drain client is closing: refusals are not retried
	wakeDrain   context.CancelFunc       // ends the drain loop's wait (nil: it is not waiting)
	// onlyParked: every record in the spool was of a parked topic when the
	// drain last looked (onlyParkedLocked): it reads no further, and the
	// appender wakes it for a record of another topic (appended).
	onlyParked bool
	amu        sync.Mutex
	acks       []uint64   // seqs Kafka acknowledged, acked in the spool every ackEvery
	wait       *chunkWait // the chunk's records without Kafka's answer yet
	drainOpts  []kgo.Opt  // the drain client's (setAside makes others): drainClient
	// big: the drain's clients build batches up to the topic's limit, not
	// drainBatchBytes (smallOpts), since a record too large for those was
	// read (s.dmu; bigNeeded is set by addLocked, acted on by drain).
	smallOpts      []kgo.Opt
	big, bigNeeded bool
	// unplaced: the drain stopped while its client had not placed every
	// record of the chunk (s.dmu): close closes the client without
	// flushing it (nothing of the chunk was sent; it stays in the spool).
	unplaced bool
	place    *placeWait // the current chunk's (s.dmu)
	// drainTopics are the topics the drain client has been handed
	// records of (s.dmu): only their partitions' state in it is to renew
	// (refreshParked).
	drainTopics map[string]bool
	// aside are the drain clients set aside with their chunks, which
	// Kafka had not answered in full within drainAside (s.dmu), at most
	// maxAside; a topic with records of one not answered waits, parked
	// (parkedTopic.aside), until they are. asideWG counts their
	// goroutines (awaitAside).
	aside   []*asideChunk
	asideWG sync.WaitGroup

	stopDrain context.CancelFunc
	drainDone chan struct{}
	writeDone chan struct{}
}

type spoolMetrics struct {
	spooled, drained, dups, drainErrors, readErrors prometheus.Counter
}

// gate orders one topic's records between Kafka and the spool (see above).
type gate struct {
	topic    string
	mu       sync.Mutex
	spooling bool
	gen      context.Context
	cancel   context.CancelFunc
	// The records handed to kgo under the gate and not yet answered by
	// it nor taken by a flip, in the order they were handed over; out
	// counts them.
	first, last *gateRec
	out         int
	held        []*spoolItem // records waiting for a record of their key in kgo (blocks), by seq
	queued      int          // records in the append queue or being appended
	// seq numbers the gate's records for the spool in the order they
	// came: held records and the queue keep it per key.
	seq uint64
	// released: held records are let go, and the gate is in the
	// appender's releases.
	released bool
	// blindUntil: no broker could say whether the topic exists (blind):
	// its next record spools, whatever the spool holds of it, until this
	// time, the deadline of the records that found it so; zero: not blind.
	blindUntil time.Time
	// relinked is the spooler's count of records linked again
	// (spooler.relinked).
	relinked *atomic.Int64
	// freed: taken out of the spooler's gates, holding nothing
	// (sweepGatesLocked); lockGate takes the topic's gate anew.
	freed bool
	// unsavedWarned: the topic went direct with its acknowledged records
	// not saved, and the log said so (drainedLocked); cleared once saved.
	unsavedWarned bool
}

// gateRec is a record handed to kgo under its topic's gate (pending's and
// batchItem's): a link of the gate's list while kgo has it.
type gateRec struct {
	gate *gate           // nil: not gated (spool off, acks=0)
	gen  context.Context // the generation it was handed over in; nil: spool=0
	rec  *kgo.Record
	// at is rec's time when it was handed over (kgo may write
	// rec.Timestamp meanwhile): its time in the spool should a flip take it.
	at time.Time
	// prev and next link the gate's list; linked while in it.
	prev, next *gateRec
	linked     bool
	// seq is its place among its gate's records (gate.seq), given when
	// it was handed over: the records held behind it are those of its
	// key that came after it (blocksLocked).
	seq uint64
	// item is its copy in the spool when a flip took it (g.mu): set, kgo's
	// answer is ignored.
	item *spoolItem
}

// spoolItem is a record on its way to the spool.
type spoolItem struct {
	rec  spool.Record
	g    *gate
	dup  bool          // handed to kgo before: it may be in Kafka already
	done chan struct{} // closed once appended (err nil) or refused
	err  error
	// rest is how many items after it in the queue belong to its Append
	// (a flip's records: appended all at once or none).
	rest int
	// after is the record of its key before it in the same batch, when
	// that one went to the spool too (queued before it), or, for one the
	// flip held (flipHeld), the record of its key the flip took before it
	// (of any request): refused, this one is refused as well, or it would
	// reach Kafka without it.
	after *spoolItem
	// from is the record in kgo a flip took it from (nil: not a flip's).
	// Refused by the spool while kgo has it (answered false), from is
	// linked in its gate again (relinkLocked).
	from *gateRec
	// flipHeld: the flip took it behind a spool=0 record of its key and
	// held it (flipLocked); not in the flip's group, it is held and
	// refused like a record that came after the flip.
	flipHeld bool
	// answered: kgo answered from after the flip took it (g.mu). Kept
	// here, not in from: once answered, from's memory (a pending, a batch
	// job's item) is its owner's to release and reuse, and is not read.
	answered bool
	// late: its request stopped waiting for it while it was not held,
	// or held and let go awaiting the release (withdraw; g.mu): the
	// appender refuses it rather than hold it (again).
	late bool
	// seq is its place among its gate's records (gate.seq).
	seq uint64
}

func openSpooler(ctx context.Context, cfg Config, log *slog.Logger, ps *producers, check *topicCheck, reg *prometheus.Registry) (*spooler, error) {
	sp, err := spool.OpenContext(ctx, spool.Options{Dir: cfg.SpoolDir, MaxBytes: cfg.SpoolMaxBytes, Log: log.With("spool", cfg.SpoolDir)})
	if err != nil {
		where := "config"
		if cfg.file != "" {
			where = cfg.file
		}
		return nil, fmt.Errorf("%s: spool_dir %s: %w", where, cfg.SpoolDir, err)
	}
	// The drain's client: idempotent, acks=-1, and without a delivery
	// timeout: kgo retries a spooled record until Kafka takes it, never
	// failing it by time, which would let a later record of its partition
	// overtake it (the live clients fail records by their deadline). It
	// sends only when the drain flushes a chunk (drain).
	drainOpts := append(ps.common[:len(ps.common):len(ps.common)],
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(0),
		kgo.ManualFlushing(),
		kgo.MaxBufferedRecords(drainChunk),
		kgo.WithHooks(drainPartitioned{}),
	)
	// At first, batches of at most drainBatchBytes: a chunk's records of
	// a partition leave in several produce requests, up to four out at
	// once (idempotent), so that kgo encodes the next while Kafka writes
	// one, instead of one request for the whole chunk. kgo fails a record
	// larger than its batch limit, which it reads once per partition: the
	// first record read that such a batch could not hold switches the
	// drain to clients with the topic's own limit, for good (drain).
	smallOpts := append(drainOpts[:len(drainOpts):len(drainOpts)],
		kgo.ProducerBatchMaxBytesFn(func(topic string) int32 {
			limit := int32(cfg.MaxMessageBytes)
			if check != nil {
				limit = check.batchMaxBytes(topic)
			}
			return min(limit, drainBatchBytes)
		}))
	drainC, err := kgo.NewClient(smallOpts...)
	if err != nil {
		sp.Close()
		return nil, fmt.Errorf("kafka client for the spool's drain: %w", err)
	}
	afterD := time.Duration(cfg.SpoolAfterMs) * time.Millisecond
	s := &spooler{sp: sp, log: log, after: newDeadlines(afterD), afterD: afterD,
		drainC: drainC, drainTopics: map[string]bool{}, drainOpts: drainOpts, smallOpts: smallOpts, wait: &chunkWait{}, check: check, gates: map[string]*gate{}, gatesSweep: minGatesSweep, wake: make(chan struct{}, 1),
		parked: map[string]*parkedTopic{}, parkBudget: maxParkedBytes, pause: map[string]time.Duration{},
		errLog: sampled{log: log, every: time.Second}, readLog: sampled{log: log, every: 10 * time.Second}}
	s.onDrained = s.drained
	s.saveFloor = sp.SaveTopic
	s.appendRecs = sp.Append
	s.registerMetrics(reg)
	if st := sp.Stats(); st.Records > 0 {
		log.Info("spool holds records from before the restart; draining them", "records", st.Records,
			"bytes", st.Bytes, "replayed", st.Replayed, "cut_bytes", st.Cut)
	}
	return s, nil
}

func (s *spooler) registerMetrics(reg *prometheus.Registry) {
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	s.m.spooled = counter("kproxy_spooled_total", "Records appended to the spool (answered 202, or spooled for a batch).")
	s.m.drained = counter("kproxy_spool_drained_total", "Spooled records Kafka acknowledged (acks -1) and removed from the spool.")
	s.m.dups = counter("kproxy_spool_duplicates_possible_total",
		"Records spooled while kgo still held them (their topic started spooling): their request may have been written, so they may be in Kafka twice.")
	s.m.drainErrors = counter("kproxy_spool_drain_errors_total",
		"Spooled records Kafka refused while draining (kept in the spool and retried).")
	s.m.readErrors = counter("kproxy_spool_read_errors_total",
		"Reads of the spool by the drain that failed with an I/O error (nothing skipped; retried after a pause; a parked topic read back: that topic only waits).")
	gauge := func(name, help string, f func(spool.Stats) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return f(s.sp.Stats()) }))
	}
	gauge("kproxy_spool_records", "Records in the spool not yet acknowledged by Kafka.",
		func(st spool.Stats) float64 { return float64(st.Records) })
	gauge("kproxy_spool_bytes", "Bytes of the entries in the spool's segments (the segment being written also holds up to 1 MiB of zeros written ahead of them).",
		func(st spool.Stats) float64 { return float64(st.Bytes) })
	gauge("kproxy_spool_replayed_records", "Records the spool held when kproxy started (left by the run before): "+
		"kproxy_spooled_total plus this is what kproxy_spool_drained_total plus kproxy_spool_lost_records_total reaches once the spool is empty.",
		func(st spool.Stats) float64 { return float64(st.Replayed) })
	counterFunc := func(name, help string, f func(spool.Stats) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return f(s.sp.Stats()) }))
	}
	counterFunc("kproxy_spool_lost_records_total", "Spooled records the drain found corrupt on disk (their checksum no longer matches) and cut, "+
		"with the later records of their segment: answered 202, never written to Kafka; each cut logged at Error with the file and offset. "+
		"Not the records of a segment found damaged at start (their count cannot be read past the damage): kproxy_spool_cut_bytes_total counts those bytes.",
		func(st spool.Stats) float64 { return float64(st.Dropped) })
	counterFunc("kproxy_spool_cut_bytes_total", "Bytes of the spool cut as torn or corrupt: tails cut at start (a write a crash tore, or damage) and the segments' rests the drain cut; "+
		"each cut logged with the file and offset.",
		func(st spool.Stats) float64 { return float64(st.Cut) })
	reg.MustRegister(parkedRecords{s, prometheus.NewDesc("kproxy_spool_parked_records",
		"Records in the spool of a topic the drain holds back, by topic: Kafka refused a record of it (unknown topic, denied, too large), "+
			"or has not answered its records in a chunk set aside (a partition without leader or in-sync replicas); "+
			"kept and retried until Kafka takes them.", []string{"topic"}, nil)})
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kproxy_spool_drain_waiting_records",
		Help: "Records the drain handed to its Kafka clients and has no answer for yet (a partition without leader or in-sync replicas keeps them; so does a topic whose metadata has not come, before anything of it is sent)."},
		func() float64 {
			s.dmu.Lock()
			defer s.dmu.Unlock()
			n := s.wait.n.Load()
			for _, a := range s.aside {
				n += a.wait.n.Load()
			}
			return float64(n)
		}))
	gauge("kproxy_spool_oldest_age_seconds", "Age of the oldest record in the spool; 0 when empty.",
		func(st spool.Stats) float64 {
			if st.Oldest.IsZero() {
				return 0
			}
			return time.Since(st.Oldest).Seconds()
		})
}

// parkedRecords collects kproxy_spool_parked_records: for each topic
// Kafka refused to the drain and has not acknowledged a record of since
// (s.pause), and each topic parked (s.parked, a chunk set aside too), the
// records of it in the spool: in memory, in the spool only (p.disk), or
// sent and not answered.
type parkedRecords struct {
	s    *spooler
	desc *prometheus.Desc
}

func (c parkedRecords) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c parkedRecords) Collect(ch chan<- prometheus.Metric) {
	c.s.dmu.Lock()
	topics := make([]string, 0, len(c.s.pause)+len(c.s.parked))
	for t := range c.s.pause {
		topics = append(topics, t)
	}
	for t := range c.s.parked {
		if _, ok := c.s.pause[t]; !ok {
			topics = append(topics, t)
		}
	}
	c.s.dmu.Unlock()
	for _, t := range topics {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(c.s.sp.Pending(t)), t)
	}
}

// start runs the appender and the drain; stop ends them.
func (s *spooler) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopDrain = cancel
	s.drainDone, s.writeDone = make(chan struct{}), make(chan struct{})
	go func() { defer close(s.writeDone); s.write() }()
	go func() { defer close(s.drainDone); s.drain(ctx) }()
}

// close stops the spool, in order:
//  1. the appender appends what is queued (the handlers are done: nothing
//     more comes) and stops; a record queued later is refused;
//  2. the drain stops reading, and the goroutines of the chunks set aside
//     end (bounded by ctx): none acks once the spool is closed;
//  3. the drain waits (bounded by ctx) for Kafka's answers to the records
//     it has out, in its client and those set aside; those unanswered
//     stay in the spool and are drained again after a restart
//     (duplicates possible);
//  4. the drain's clients and the spool are closed (the acked watermark
//     persisted).
func (s *spooler) close(ctx context.Context) error {
	s.qmu.Lock()
	s.closed = true
	s.qmu.Unlock()
	s.signal()
	if s.writeDone != nil {
		<-s.writeDone
		s.stopDrain()
		<-s.drainDone
		asideDone := make(chan struct{})
		go func() { s.asideWG.Wait(); close(asideDone) }()
		select {
		case <-asideDone:
		case <-ctx.Done():
		}
	}
	s.dmu.Lock()
	s.stopped = true
	clients := []*kgo.Client{s.drainC}
	late := []bool{s.unplaced || (s.place != nil && s.place.left.Load() > 0)}
	for _, a := range s.aside {
		clients = append(clients, a.c) // its goroutine leaves it to close
		late = append(late, a.place != nil && a.place.left.Load() > 0)
	}
	s.aside = nil
	s.dmu.Unlock()
	var errs []error
	for i, c := range clients {
		if late[i] {
			// Not every record of its chunk was placed: a flush now could
			// send a partition's first records and, after a refusal, the
			// rest ahead of them (drain). Nothing was sent: they stay in
			// the spool.
			c.Close()
			continue
		}
		// Flush fails once ctx is over even with nothing buffered: an
		// error only when records are left.
		if err := flushKicked(ctx, c); err != nil {
			if n := c.BufferedProduceRecords(); n > 0 {
				errs = append(errs, fmt.Errorf("spool drain: %d records without kafka's answer stay in the spool: %w", n, err))
			}
		}
		c.Close()
	}
	s.ackDrained()
	if err := s.sp.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close spool: %w", err))
	}
	return errors.Join(errs...)
}

// lockGate returns topic's gate, g.mu held.
func (s *spooler) lockGate(topic string) *gate {
	for {
		s.gatesMu.Lock()
		g := s.gates[topic]
		if g == nil {
			if len(s.gates) >= s.gatesSweep {
				s.sweepGatesLocked()
			}
			g = &gate{topic: topic, relinked: &s.relinked}
			g.gen, g.cancel = context.WithCancel(context.Background())
			s.gates[topic] = g
		}
		s.gatesMu.Unlock()
		g.mu.Lock()
		if !g.freed {
			return g
		}
		g.mu.Unlock() // freed meanwhile: the topic's next gate
	}
}

// minGatesSweep is the fewest gates kept before the first sweep.
const minGatesSweep = 256

// sweepGatesLocked frees the gates holding nothing (s.gatesMu held): a
// gate is made for every topic a record names, and with Kafka away that
// is any name a client sends, spooled or refused. A gate holds nothing
// when no record of it is in kgo, queued for the spool, held or let go,
// its topic has nothing in the spool and no blind mark stands: its next
// record would find it as directLocked leaves a gate that spooled, so a
// new one stands for it. One in use (its lock held) is kept. The next
// sweep comes once the gates kept have doubled (256 at least), so that
// sweeps cost about one look per gate made.
func (s *spooler) sweepGatesLocked() {
	now := time.Now()
	for topic, g := range s.gates {
		if !g.mu.TryLock() {
			continue
		}
		if g.out == 0 && g.queued == 0 && len(g.held) == 0 && !g.released &&
			!now.Before(g.blindUntil) && s.sp.Pending(topic) == 0 {
			g.freed = true
			g.cancel()
			delete(s.gates, topic)
		}
		g.mu.Unlock()
	}
	s.gatesSweep = max(minGatesSweep, 2*len(s.gates))
}

// directLocked tells, g.mu held, whether a new record of g's topic goes to
// Kafka (else to the spool), and flips the gate as needed.
func (s *spooler) directLocked(g *gate) bool {
	if !g.blindUntil.IsZero() {
		if time.Now().Before(g.blindUntil) {
			if !g.spooling {
				s.flipLocked(g)
			}
			return false
		}
		// The records that found it blind are past their deadline, and
		// none came here (holdLocked): refused before, they hold nothing
		// of the topic back.
		g.blindUntil = time.Time{}
	}
	if !g.spooling {
		if s.drainedLocked(g) {
			return true
		}
		s.flipLocked(g) // entries replayed by Open: they go first
		return false
	}
	if g.out == 0 && g.queued == 0 && len(g.held) == 0 && s.drainedLocked(g) {
		g.spooling = false
		g.gen, g.cancel = context.WithCancel(context.Background())
		return true
	}
	return false
}

// drainedLocked tells, g.mu held, whether g's topic has nothing in the
// spool (Kafka acknowledged every record of it the drain sent), and makes
// sure a crash would not bring those records back (Spool.SaveTopic): the
// drain after a restart would write them again after the newer records of
// their keys, which go to Kafka directly from now on. The spool's own
// watermark passes them only once every older record of any topic is
// acknowledged, which a topic Kafka keeps refusing holds back for as long.
// A save that fails is logged and the topic goes direct all the same: a
// spool that cannot write would refuse its records, while Kafka takes
// them.
//
// The save waits for the disk at most saveTopicWait (a disk that hangs
// would hold the topic's records, which Kafka takes, and every topic's
// save behind it). After one that failed or did not end in time the
// topics go direct unsaved, each one logged once, for saveTopicRetry, or until
// the late save ends well: a failing disk is not asked again at every
// record, under the gate's lock, and a slow one that answers is asked
// again at once; while a save given up on still waits for the disk, no
// other starts. A topic already direct (gone direct unsaved) does not
// wait for its save's retry.
func (s *spooler) drainedLocked(g *gate) bool {
	pending, unsaved := s.sp.TopicState(g.topic)
	if pending > 0 {
		return false
	}
	if !unsaved {
		g.unsavedWarned = false
		return true
	}
	if time.Now().UnixNano() < s.saveRetryAt.Load() || s.lateSaves.Load() > 0 {
		if !g.unsavedWarned { // once per topic until it is saved: not at every record, nor one topic's for all
			g.unsavedWarned = true
			s.log.Warn("spool: a drained topic goes to Kafka directly with its acknowledged records not saved (a save failed or still waits for the disk); a crash now would write them again after newer ones", "topic", g.topic)
		}
		return true
	}
	if !g.spooling && g.unsavedWarned {
		// A topic gone direct unsaved, its save tried again: not waited
		// for under g.mu. Its records in Kafka's client would wait for
		// g.mu in their answers (settle), and every answer of the client
		// behind them, for as long as the disk takes; its records go
		// direct already. Counted as a late save: no other starts
		// meanwhile.
		s.saveMu.Lock()
		s.lateSaves.Add(1)
		s.saveMu.Unlock()
		topic := g.topic
		go func() {
			err := s.saveFloor(topic)
			s.saveMu.Lock()
			defer s.saveMu.Unlock()
			s.lateSaves.Add(-1)
			if err != nil {
				s.saveRetryAt.Store(time.Now().Add(saveTopicRetry).UnixNano())
				s.log.Warn("spool: a topic gone to Kafka directly still has its acknowledged records not saved; a crash now would write them again after newer ones", "topic", topic, "err", err)
			}
		}()
		return true
	}
	done := make(chan error, 1)
	late := false // the wait below gave up on it (under saveMu)
	go func() {
		err := s.saveFloor(g.topic)
		s.saveMu.Lock()
		defer s.saveMu.Unlock()
		if late {
			s.lateSaves.Add(-1)
			if err == nil {
				s.saveRetryAt.Store(0) // the disk answered: the topics gone direct unsaved meanwhile are saved at their next record
			}
		}
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(saveTopicWait):
		s.saveMu.Lock()
		select {
		case err = <-done: // it ended meanwhile
		default:
			late = true
			s.lateSaves.Add(1)
			err = fmt.Errorf("the disk did not answer within %v", saveTopicWait)
			s.saveRetryAt.Store(time.Now().Add(saveTopicRetry).UnixNano())
		}
		s.saveMu.Unlock()
	}
	if err != nil {
		if !late {
			s.saveMu.Lock()
			s.saveRetryAt.Store(time.Now().Add(saveTopicRetry).UnixNano())
			s.saveMu.Unlock()
		}
		g.unsavedWarned = true
		s.log.Warn("spool: a drained topic goes to Kafka directly with its acknowledged records not saved; a crash now would write them again after newer ones", "topic", g.topic, "err", err) // at most one a saveTopicRetry
	}
	return true
}

// saveTopicWait bounds drainedLocked's wait for a topic's floor to be
// saved; saveTopicRetry is how long the topics go direct unsaved after a
// save that failed or was not done in time.
const (
	saveTopicWait  = time.Second
	saveTopicRetry = 10 * time.Second
)

// blind makes the topic spool when no broker answered whether it exists
// (its metadata, within spool_after_ms): its records go to the spool and
// the drain finds out. It waits for after (spool_after_ms from the
// record's arrival) unless the topic spools already (flipped, marked blind
// by another record until a deadline not passed yet, or with records in
// the spool, which its next record flips it for: directLocked), and not
// past dl, the record's deadline: false when dl came first, the topic left
// as it was.
// A topic that turns out not to exist is refused by Kafka to the drain
// and parked (refused).
//
// The next record of the topic then spools (directLocked), until dl, the
// record's deadline: should that record not come (its request refused
// for another reason: a record too large, a rate limit, a client gone),
// the topic goes to Kafka directly again once dl passed, rather than
// refuse every spool=0 record and atomic batch of it until a record that
// may spool comes.
func (s *spooler) blind(topic string, after, dl context.Context) bool {
	g := s.lockGate(topic)
	spooling := g.spooling || time.Now().Before(g.blindUntil) || s.sp.Pending(topic) > 0
	g.mu.Unlock()
	if !spooling {
		select {
		case <-after.Done():
		case <-dl.Done():
			if after.Err() == nil {
				return false
			}
		}
	}
	until, _ := dl.Deadline() // every record's has one
	g = s.lockGate(topic)     // freed while it waited, had it nothing
	if until.After(g.blindUntil) {
		g.blindUntil = until
	}
	g.mu.Unlock()
	return true
}

// addLocked keeps r, about to be handed to kgo under g (g.mu held), as n
// at the end of g's list: gen is its generation (nil for a spool=0 record).
func (g *gate) addLocked(n *gateRec, r *kgo.Record, gen context.Context) {
	n.gate, n.gen, n.rec, n.item = g, gen, r, nil
	g.seq++
	n.seq = g.seq
	if n.at = r.Timestamp; n.at.IsZero() {
		n.at = time.Now() // kgo's own time for it, nearly
	}
	g.appendLocked(n)
}

// appendLocked links n at the end of g's list, g.mu held.
func (g *gate) appendLocked(n *gateRec) {
	n.prev, n.next, n.linked = g.last, nil, true
	if g.last != nil {
		g.last.next = n
	} else {
		g.first = n
	}
	g.last = n
	g.out++
}

func (g *gate) unlinkLocked(n *gateRec) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		g.first = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		g.last = n.prev
	}
	n.prev, n.next, n.linked = nil, nil, false
	g.out--
}

// flip makes n's topic spool, when n is still in kgo (its generation is
// then the gate's, since the gate changes generation only once nothing is
// in kgo), and returns n's copy in the spool (nil: kgo answered it before
// the flip, and that answer stands).
func (s *spooler) flip(n *gateRec) *spoolItem {
	g := n.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if n.linked && !g.spooling {
		s.flipLocked(g)
	}
	return n.item
}

// taken returns n's spool item when a flip took n's record into the spool
// (or the spool refused the copy: relinkLocked), nil while kgo alone has
// it; it flips nothing.
func (s *spooler) taken(n *gateRec) *spoolItem {
	g := n.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	return n.item
}

// flipLocked makes g's topic spool (g.mu held): its generation is
// cancelled, and its records in kgo are taken into the spool, in the order
// they were handed over, as one Append; records arriving later are queued
// after them (see above). A record taken behind a spool=0 record of its
// key, which stays in kgo, is held for that one's answer as a record
// arriving later would be (holdLocked), and so are the later ones of its
// key the flip takes: appended at once, it could be drained before kgo
// writes the spool=0 record. It keeps its place (seq) from its hand-over,
// so that a spool=0 record handed over after it does not hold it. It comes
// after (spoolItem.after) the record of its key the flip took before it:
// should that one be refused (at its deadline while held, or by the spool)
// and kgo answer it, nothing else would keep this one from being spooled
// alone. The flip does not know requests: a later request's record is
// refused so too, as kgo fails a partition's records queued behind one it
// gives up.
func (s *spooler) flipLocked(g *gate) {
	g.spooling = true
	g.cancel()
	var group []*spoolItem
	var behind map[string]bool      // keys of the spool=0 records passed
	var taken map[string]*spoolItem // the last record taken of each key, once a spool=0 record was passed
	for n := g.first; n != nil; {
		next := n.next
		if n.gen == nil || n.item != nil { // spool=0, or taken before (relinkLocked): stays
			if n.rec.Key != nil {
				if behind == nil {
					behind = map[string]bool{}
					taken = map[string]*spoolItem{}
					for _, it := range group {
						if it.rec.Key != nil {
							taken[string(it.rec.Key)] = it
						}
					}
				}
				behind[string(n.rec.Key)] = true
			}
			n = next
			continue
		}
		it := newSpoolItem(g, n.rec, true, n.at)
		n.item, it.from, it.seq = it, n, n.seq
		g.unlinkLocked(n)
		if n.rec.Key != nil && behind[string(n.rec.Key)] {
			it.flipHeld = true
			// Refused, the record of its key taken before it refuses
			// it too (refuseAfterRefused, holdBlocked): kgo's answer
			// may let it go while that one is not written.
			it.after = taken[string(n.rec.Key)]
			g.queued++
			g.held = append(g.held, it) // by seq: nothing was held before the flip
		} else {
			group = append(group, it)
		}
		if taken != nil && n.rec.Key != nil {
			taken[string(n.rec.Key)] = it
		}
		n = next
	}
	if len(group) == 0 {
		return
	}
	for i, it := range group {
		it.rest = len(group) - 1 - i
	}
	g.queued += len(group)
	s.push(group...)
}

// blocksLocked tells whether it waits for a record of its key still in
// kgo that came before it (g.mu held; after a flip only spool=0 records
// and those linked again are in g's list): a spool=0 record handed over
// after it, which the flip left in kgo, does not hold it. Keyless records
// keep no order.
func (g *gate) blocksLocked(it *spoolItem) bool {
	key := it.rec.Key
	if key == nil {
		return false
	}
	for n := g.first; n != nil; n = n.next {
		if n.seq < it.seq && n.rec.Key != nil && string(n.rec.Key) == string(key) {
			return true
		}
	}
	return false
}

// relinkLocked puts n back at the end of g's list (g.mu held): a flip took
// it, kgo has not answered it, and the spool refused its copy. Its request
// may be out, and the broker may still write it: like a spool=0 record,
// it keeps the topic spooling and the later records of its key wait for
// kgo's answer (blocksLocked), lest the drain write one of them first.
// n.item set: no flip takes it again. n.gen is left as it is: the
// record's request reads it without g.mu.
func (g *gate) relinkLocked(n *gateRec) {
	g.appendLocked(n)
}

// holdLocked queues a new record of a spooling topic, g.mu held: after
// the records of its key still in kgo (spool=0, or linked again), and
// after those held for them. A held record waits for them until its
// deadline (await).
func (s *spooler) holdLocked(g *gate, it *spoolItem) {
	g.queued++
	g.blindUntil = time.Time{} // queued keeps the topic spooling, then Pending
	g.seq++
	it.seq = g.seq
	if g.blocksLocked(it) {
		g.held = append(g.held, it) // the latest: last by seq
		return
	}
	s.push(it)
}

// heldKeyLocked tells whether a record of key is held (g.mu held): the
// appender holds behind it a later record of key a pass took once kgo
// answered what it waited for and before the release queued it
// (holdBlocked). A record of key arriving then is queued (holdLocked):
// the release puts the held one before it (seq).
func (g *gate) heldKeyLocked(key []byte) bool {
	if key == nil {
		return false
	}
	for _, h := range g.held {
		if string(h.rec.Key) == string(key) {
			return true
		}
	}
	return false
}

// holdInOrderLocked adds it to g's held records in its place by seq
// (g.mu held): the appender may hold a record queued before some held
// on arrival.
func (g *gate) holdInOrderLocked(it *spoolItem) {
	i, _ := slices.BinarySearchFunc(g.held, it.seq, func(h *spoolItem, seq uint64) int {
		return cmp.Compare(h.seq, seq)
	})
	g.held = slices.Insert(g.held, i, it)
}

// settle takes kgo's answer for a record handed to it under its gate:
// taken tells that a flip took it into the spool (the answer is ignored).
// A spool=0 record answered lets the records of its key held for it go.
func (s *spooler) settle(n *gateRec) (taken bool) {
	g := n.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if !n.linked {
		// Taken: only a flip unlinks before the answer. n is not read
		// through its copy from now on (finish), since n's owner may
		// release it once this returns.
		n.item.answered = true
		return true
	}
	g.unlinkLocked(n)
	if !g.released && slices.ContainsFunc(g.held, func(h *spoolItem) bool { return !g.blocksLocked(h) }) {
		// Before relinked drops: holdBlocked looks while either is set.
		s.releaseLocked(g)
	}
	if n.item != nil { // taken by a flip, refused by the spool, linked again
		s.relinked.Add(-1)
	}
	return false
}

// releaseLocked hands g, whose held records kgo's answer let go, to the
// appender (g.mu held), which queues them between two passes (release):
// a pass may have taken later records of their keys, and holds those
// behind them (holdBlocked). Once the spool is closed, they are refused
// (push).
func (s *spooler) releaseLocked(g *gate) {
	s.qmu.Lock()
	if s.closed {
		s.qmu.Unlock()
		s.push(g.takeReleasedLocked()...)
		return
	}
	g.released = true
	s.releases = append(s.releases, g)
	s.releasing.Add(1)
	s.qmu.Unlock()
	s.signal()
}

// takeReleasedLocked takes g's held records no longer blocked, by seq
// (g.mu held).
func (g *gate) takeReleasedLocked() []*spoolItem {
	var out []*spoolItem
	kept := g.held[:0]
	for _, h := range g.held {
		switch {
		case g.blocksLocked(h) && h.late:
			// Let go once, its request stopped waiting meanwhile
			// (withdraw), and blocked again since (a record of its
			// key linked in again): refused, not held past its
			// deadline.
			g.refuseLocked(h, errHeldPastDeadline)
		case g.blocksLocked(h):
			kept = append(kept, h)
		default:
			out = append(out, h)
		}
	}
	clear(g.held[len(kept):])
	g.held = kept
	return out
}

// release queues the held records let go (releaseLocked), on the
// appender's goroutine between two passes, each before the queued records
// of its key that came after it (seq): those a pass did not reach while
// it was held, queued before it was held.
func (s *spooler) release() {
	s.qmu.Lock()
	gates := s.releases
	s.releases = nil
	s.qmu.Unlock()
	for _, g := range gates {
		g.mu.Lock()
		g.released = false
		items := g.takeReleasedLocked()
		s.qmu.Lock()
		s.queue = mergeReleased(s.queue, g, items)
		s.qmu.Unlock()
		g.mu.Unlock()
		s.releasing.Add(-1)
	}
}

// mergeReleased returns q with items, g's records let go (by seq), each
// before the first record of its key in q that came after it (seq), the
// others at the end, in their order: one walk of q, so that the release,
// which holds the queue's lock, costs what it moves. Such a record of g
// stands alone, never in a flip's group: g flipped before it spooled, and
// so before any of its records was held; one the flip held was left out
// of its group (flipLocked).
func mergeReleased(q []*spoolItem, g *gate, items []*spoolItem) []*spoolItem {
	if len(items) == 0 { // held again, all of them: the queue as it is
		return q
	}
	waiting := make(map[string][]*spoolItem) // by key, by seq
	for _, it := range items {
		waiting[string(it.rec.Key)] = append(waiting[string(it.rec.Key)], it)
	}
	out := make([]*spoolItem, 0, len(q)+len(items))
	for _, x := range q {
		if x.g == g {
			w := waiting[string(x.rec.Key)]
			n := 0
			for n < len(w) && w[n].seq < x.seq {
				n++
			}
			if n > 0 {
				out = append(out, w[:n]...)
				waiting[string(x.rec.Key)] = w[n:]
			}
		}
		out = append(out, x)
	}
	for _, it := range items {
		if w := waiting[string(it.rec.Key)]; len(w) > 0 && w[0] == it {
			out = append(out, it)
			waiting[string(it.rec.Key)] = w[1:]
		}
	}
	clear(q)
	return out
}

// newSpoolItem copies r for the spool: its buffers are the request's. The
// key, value and header values share one allocation. at is the record's
// time, its timestamp once drained (zero: now); not r.Timestamp, which kgo
// writes while it holds r.
func newSpoolItem(g *gate, r *kgo.Record, dup bool, at time.Time) *spoolItem {
	it := &spoolItem{g: g, dup: dup, done: make(chan struct{})}
	if it.rec.Time = at; at.IsZero() {
		it.rec.Time = time.Now()
	}
	it.rec.Topic = r.Topic
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Value)
	}
	buf := make([]byte, 0, n)
	take := func(b []byte) []byte {
		buf = append(buf, b...)
		return buf[len(buf)-len(b) : len(buf) : len(buf)]
	}
	if r.Key != nil {
		it.rec.Key = take(r.Key)
	}
	it.rec.Value = take(r.Value)
	if len(r.Headers) > 0 {
		it.rec.Headers = make([]spool.Header, len(r.Headers))
		for i, h := range r.Headers {
			it.rec.Headers[i] = spool.Header{Key: h.Key, Value: take(h.Value)}
		}
	}
	return it
}

// push queues items for the appender, in order.
func (s *spooler) push(items ...*spoolItem) {
	s.qmu.Lock()
	if s.closed {
		s.qmu.Unlock()
		// On a goroutine of its own: the callers hold their gate's
		// mutex (flipLocked, holdLocked, settle), which finish takes.
		go s.finish(items, errSpoolClosed)
		return
	}
	s.queue = append(s.queue, items...)
	s.qmu.Unlock()
	s.signal()
}

// groupEnd extends the first n items of q to the end of the flip's group
// the last of them belongs to: a group is appended whole.
func groupEnd(q []*spoolItem, n int) int {
	if n == 0 {
		return 0
	}
	return n + q[n-1].rest
}

func (s *spooler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// write appends the queue in order, a group per Append (one fsync), until
// the spool is closed and the queue empty.
func (s *spooler) write() {
	var recs []spool.Record
	for {
		<-s.wake
		for {
			items, closed := s.takePass()
			if len(items) == 0 {
				if closed {
					return
				}
				break
			}
			recs = s.appendItems(items, recs)
			if closed {
				return
			}
		}
	}
}

// takePass queues the held records let go (release), then takes the
// items of the appender's next pass from the queue: up to maxAppendGroup
// and the end of the last one's group. closed: the spool is closed and
// nothing is left for a later pass.
func (s *spooler) takePass() (items []*spoolItem, closed bool) {
	s.release()
	s.qmu.Lock()
	defer s.qmu.Unlock()
	n := groupEnd(s.queue, min(len(s.queue), maxAppendGroup))
	items = append([]*spoolItem(nil), s.queue[:n]...)
	s.queue = s.queue[:copy(s.queue, s.queue[n:])]
	return items, s.closed && len(s.queue) == 0 && len(s.releases) == 0
}

// appendItems appends items in one Append (one fsync) and gives them
// their outcome. Should the spool have no room for them all, it appends
// as many as fit, in order, halving the items at a flip's group boundary
// (a group is appended whole or not at all); the items of different
// requests are not all-or-nothing with each other. recs is scratch space,
// returned for reuse.
func (s *spooler) appendItems(items []*spoolItem, recs []spool.Record) []spool.Record {
	if items = s.holdBlocked(s.refuseAfterRefused(items)); len(items) == 0 {
		return recs
	}
	recs = recs[:0]
	for _, it := range items {
		recs = append(recs, it.rec)
	}
	s.appending.Store(monoNow())
	_, err := s.appendRecs(recs)
	s.appending.Store(0)
	clear(recs)
	if errors.Is(err, spool.ErrFull) && items[0].rest+1 < len(items) {
		// More than one group: the first half (to the end of the group
		// holding the middle item, if that is not the last) and the rest.
		half := len(items) / 2
		for half > 0 && items[half-1].rest > 0 { // half-1 is not the end of its group
			half--
		}
		if half == 0 { // the first group holds the middle item
			half = items[0].rest + 1
		}
		recs = s.appendItems(items[:half], recs)
		return s.appendItems(items[half:], recs)
	}
	if !errors.Is(err, spool.ErrFull) {
		s.failMu.Lock()
		s.failAt, s.failErr = time.Now(), err
		s.failMu.Unlock()
	}
	if err == nil {
		s.appended(items)
		s.m.spooled.Add(float64(len(items)))
		for _, it := range items {
			if it.dup {
				s.m.dups.Inc()
			}
		}
	} else {
		s.errLog.warn("spool append failed; records refused", "records", len(items), "err", err)
	}
	s.finish(items, err)
	return recs
}

// holdBlocked moves the items queued behind a record of their key that
// the spool refused from a flip while kgo had it (relinkLocked: an earlier
// half of the same append), or behind a held record of their key, to
// their gate's held records, in their place (seq), to be appended once
// kgo answered it; it returns the others, in order. Held behind a held
// record, an item stays so after kgo's answer until the appender queues
// them both, in order (release): a later item of its key in this pass
// would otherwise be appended first. The records of a flip's group are
// not held (grouped): no record of their keys still in kgo came before
// them.
func (s *spooler) holdBlocked(items []*spoolItem) []*spoolItem {
	// Loaded in this order: settle sets releasing before relinked drops.
	if s.relinked.Load() == 0 && s.releasing.Load() == 0 {
		return items
	}
	kept := make([]*spoolItem, 0, len(items))
	for _, it := range items {
		g := it.g
		g.mu.Lock()
		switch {
		case it.after != nil && refused(it.after):
			// Refused just now as late (below), while the record of
			// its key it waited for may have been answered since.
			g.refuseLocked(it, fmt.Errorf("%w: %w", errKeyRefusedBefore, it.after.err))
		case !it.grouped() && g.blocksLocked(it):
			if it.late {
				g.refuseLocked(it, errHeldPastDeadline) // its request stopped waiting
				break
			}
			g.holdInOrderLocked(it) // still counted in queued
		case !it.grouped() && g.heldKeyLocked(it.rec.Key):
			// Let go already (g.released): queued at the next release,
			// late or not.
			g.holdInOrderLocked(it)
		default:
			g.mu.Unlock()
			kept = append(kept, it)
			continue
		}
		g.mu.Unlock()
	}
	return kept
}

// errHeldPastDeadline: a record held behind a record of its key that kgo
// has, which kgo did not answer by the held record's deadline.
var errHeldPastDeadline = errors.New("kafka did not answer an earlier record of its key in time")

// await waits for it's outcome. A record held behind a record of its key
// that kgo has (g.held: a spool=0 record, or one a flip took whose copy
// the spool refused) waits for kgo's answer until dl (its deadline) and
// answerGrace at most, as a record in kgo does, or until stop: then it is
// refused, never written (withdraw). One the appender has (queued, being
// appended) waits for its append, bounded by the disk.
func (s *spooler) await(it *spoolItem, dl context.Context, stop <-chan struct{}) {
	select {
	case <-it.done:
		return
	case <-stop:
	case <-dl.Done():
		if d, ok := dl.Deadline(); ok {
			if wait := time.Until(d.Add(answerGrace)); wait > 0 {
				timer := timerPool.Get().(*time.Timer)
				timer.Reset(wait)
				defer func() {
					timer.Stop()
					timerPool.Put(timer)
				}()
				select {
				case <-it.done:
					return
				case <-stop:
				case <-timer.C:
				}
			}
		}
	}
	it.g.withdraw(it)
	<-it.done
}

// withdraw gives it up (await), g.mu taken: held and still blocked, it is
// refused at once; otherwise the appender has it, or will have it (held,
// let go by kgo's answer: release), and it is marked late, to be refused
// should the appender find it blocked (holdBlocked) rather than held.
func (g *gate) withdraw(it *spoolItem) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if i := slices.Index(g.held, it); i >= 0 && g.blocksLocked(it) {
		g.held = slices.Delete(g.held, i, i+1)
		g.refuseLocked(it, errHeldPastDeadline)
		return
	}
	it.late = true
}

// refuseLocked gives it, held or the appender's, err as its outcome and
// takes it off g's queued, g.mu held. Refused before g.mu is let go: a
// later record of its key in its request (after) is refused with it
// (refuseAfterRefused, holdBlocked), never appended alone, even once the
// record they waited for is answered and the held records are queued.
func (g *gate) refuseLocked(it *spoolItem, err error) {
	g.queued--
	if it.from != nil && !it.answered {
		// Held by its flip (flipHeld), and kgo has not answered it:
		// linked again, as one the spool refused (finish).
		g.relinkLocked(it.from)
		g.relinked.Add(1)
	}
	it.err = err
	close(it.done)
}

// grouped tells whether it is one of a flip's group (flipLocked): taken
// from kgo and not held.
func (it *spoolItem) grouped() bool { return it.from != nil && !it.flipHeld }

// refused tells whether it was refused (its outcome known, an error).
func refused(it *spoolItem) bool {
	select {
	case <-it.done:
		return it.err != nil
	default:
		return false
	}
}

// errKeyRefusedBefore: the spool refused an earlier record of the key in
// the same request, or one a flip took before it (flipLocked).
var errKeyRefusedBefore = errors.New("an earlier record of its key in the request was refused")

// refuseAfterRefused refuses the items whose earlier record of their key
// in their request (after) was refused, and returns the others, in order.
// That record was queued before: it has its outcome, or it is among items
// (then both are appended together, or it in an earlier half).
func (s *spooler) refuseAfterRefused(items []*spoolItem) []*spoolItem {
	var kept []*spoolItem
	for i, it := range items {
		var err error
		if it.after != nil {
			select {
			case <-it.after.done:
				if it.after.err != nil {
					err = fmt.Errorf("%w: %w", errKeyRefusedBefore, it.after.err)
				}
			default:
			}
		}
		switch {
		case err != nil:
			if kept == nil {
				kept = append(make([]*spoolItem, 0, len(items)), items[:i]...)
			}
			s.finish([]*spoolItem{it}, err)
		case kept != nil:
			kept = append(kept, it)
		}
	}
	if kept == nil {
		return items
	}
	return kept
}

// finish gives items their outcome and takes them off their gates' counts,
// each gate's lock taken once for a run of its items.
func (s *spooler) finish(items []*spoolItem, err error) {
	for i := 0; i < len(items); {
		g, j := items[i].g, i+1
		for j < len(items) && items[j].g == g {
			j++
		}
		g.mu.Lock()
		g.queued -= j - i
		if err != nil {
			for _, it := range items[i:j] {
				if it.from != nil && !it.answered {
					g.relinkLocked(it.from)
					s.relinked.Add(1)
				}
			}
		}
		g.mu.Unlock()
		for _, it := range items[i:j] {
			it.err = err
			close(it.done)
		}
		i = j
	}
}

// appendStuck tells how long the running append (write and fsync) has
// been waiting for the disk, when that is longer than spoolStuckHealth.
func (s *spooler) appendStuck() (time.Duration, bool) {
	at := s.appending.Load()
	if at == 0 {
		return 0, false
	}
	d := monoSince(at)
	return d, d > spoolStuckHealth
}

// spoolStuckHealth is how long an append may wait for the disk before
// /health says so: the requests it holds, and every one spooled after,
// wait for it (bounded by the disk alone: their bodies are in it). Long
// enough for a group of large records on a slow disk that works.
const spoolStuckHealth = 10 * time.Second

// writeFailure is the latest append's error and when it came, when that
// append failed other than for want of room (the disk full for other
// files, read-only, failing); nil once an append succeeded since.
func (s *spooler) writeFailure() (time.Time, error) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failAt, s.failErr
}

// refusal is the status and reason of a record the spool could not take:
// 503 (not written), or 504 when it may be in Kafka already or be replayed
// by the spool after a restart.
func (it *spoolItem) refusal() (int, string) {
	why := "spool write failed: " + it.err.Error()
	switch {
	case errors.Is(it.err, errKeyRefusedBefore):
		why = "the spool refused an earlier record of its key in this request (or one kafka's client had before it " +
			"when its topic started spooling), which must not be overtaken"
	case errors.Is(it.err, spool.ErrFull):
		why = "kafka did not take the record within spool_after_ms and the spool is full (spool_max_bytes)"
	case errors.Is(it.err, errSpoolClosed):
		why = "kproxy is shutting down"
	case errors.Is(it.err, errHeldPastDeadline):
		why = "kafka did not answer by produce_timeout_ms an earlier record of its key (spool=0, or one " +
			"kafka may still write), which the record waited for before it could be spooled"
	}
	// A failed write the spool could not cut may be replayed after a
	// restart (spool.ErrMaybeAppended).
	if it.dup || errors.Is(it.err, spool.ErrMaybeAppended) {
		return 504, why + mayBeWritten
	}
	return 503, why + notWritten
}

// drain reads the spool in order and produces it with the drain client in
// chunks: the chunk's records are all handed to kgo (ManualFlushing:
// nothing is sent yet), then flushed, and the next chunk waits for every
// answer of this one (waitChunk). Kafka's acknowledgements are acked in the
// spool as they come (every ackEvery), so that a topic whose records Kafka
// took goes direct again while another partition of the chunk still waits.
//
// Why chunks: kgo fails a partition's buffered records together when Kafka
// refuses one of its batches (failAllRecords), but their promises come
// later, on kgo's promise goroutine; a record handed to kgo in between
// would go out in a fresh batch and could be written before the failed
// ones are sent again, ahead of older records of its key. Within a chunk
// every record is in its partition before the first is sent (the flush
// waits for it: kgo holds a topic's records until its metadata loads), so
// a refusal fails every later record of its partition in the chunk; the
// next chunk is produced only once every refusal of this one is known.
//
// A topic whose record Kafka refused, or whose records in a chunk set
// aside Kafka has not answered, is parked: its records read since wait in
// memory, so that the other topics' records keep draining; after a pause
// (or the answers) its records are produced again, oldest first, before
// anything newer of the topic. Parked records in memory are bounded by
// parkBudget, and each parked topic's by its share of it (shareLocked):
// past either, a parked topic's records read next, and its newest ones in
// memory refused again, are left in the spool (parkReadLocked,
// reparkLocked) and read back from there, behind the drain's read
// position, while it is retried and has room (fillParked);
// Read's later records of the topic are skipped until its cursor catches
// up.
func (s *spooler) drain(ctx context.Context) {
	readFails := 0 // reads failed in a row
	var fed, read, next []spool.Entry
	var fedBytes int
	for {
		rctx, cancel := context.WithCancel(ctx) // cancelled by wakeLocked
		s.refreshParked()
		if err := s.fillParked(); err != nil {
			cancel()
			return // closed
		}
		s.dmu.Lock()
		var later bool
		fed, fedBytes, later = s.feedLocked(fed[:0]) // parked records whose pause is over go first
		s.wakeDrain = cancel
		if later || s.anyFillableLocked() {
			cancel() // retried since refreshParked or fillParked: the next round takes it
		}
		s.onlyParked = len(fed) == 0 && s.onlyParkedLocked()
		idle := s.onlyParked
		s.dmu.Unlock()
		var err error
		read, next = next, read[:0] // read while the last chunk flushed
		room, roomBytes := drainChunk-len(fed), drainChunkBytes-fedBytes
		if !idle && chunkFit(read, room, roomBytes) == len(read) {
			read, err = s.readChunk(rctx, read, room, roomBytes, len(fed) == 0 && len(read) == 0)
		} else if len(fed) == 0 && len(read) == 0 {
			<-rctx.Done() // a record of another topic arrives, or a parked topic is retried
		}
		if k := chunkFit(read, room, roomBytes); k < len(read) {
			// The client buffers at most drainChunk records
			// (MaxBufferedRecords), and a chunk holds about
			// drainChunkBytes: what does not fit waits for the next
			// chunk, ahead of what is read then.
			next = append(next, read[k:]...)
			clear(read[k:])
			read = read[:k]
		}
		s.dmu.Lock()
		s.wakeDrain, s.onlyParked = nil, false
		s.dmu.Unlock()
		woken := rctx.Err() != nil // before cancel: an error then is the wake's
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil && !woken {
			if errors.Is(err, spool.ErrClosed) {
				return
			}
			readFails++
			if !s.readFailed(ctx, err, readFails) {
				return
			}
			// What was read before the error is produced below, never
			// dropped; the next Read tries again from where this one stopped.
		} else if err == nil && readFails > 0 {
			s.log.Info("spool drain: reading the spool works again", "failed_reads", readFails)
			readFails = 0
		}
		s.dmu.Lock()
		s.chunk = s.chunk[:0]
		if n := len(fed) + len(read); cap(s.chunk) < n {
			// At once rather than by append's doublings, each copying
			// the records so far (a chunk's records are large).
			s.chunk = make([]drainRec, 0, n)
		}
		for _, e := range fed {
			if p := s.parked[e.Topic]; p != nil && !p.retrying {
				s.reparkLocked(p, e) // behind its topic's record held back just now
				continue
			}
			s.addLocked(e)
		}
		for _, e := range read {
			if p := s.parked[e.Topic]; p != nil {
				s.parkReadLocked(p, e) // behind the ones Kafka refused
				continue
			}
			s.addLocked(e)
		}
		if n := len(read); n > 0 {
			s.readTo = read[n-1].Seq + 1
		}
		s.dmu.Unlock()
		clear(fed)
		clear(read)
		if !s.bigBatches(ctx) {
			return // stopping: the chunk was not handed over; it stays in the spool
		}
		pw := newPlaceWait(len(s.chunk))
		s.dmu.Lock()
		s.place = pw
		s.dmu.Unlock()
		s.hand(s.drainC, s.chunk, s.wait, pw)
		if len(s.chunk) == 0 {
			continue
		}
		// Every record of the chunk in its partition before the flush
		// sends any: a topic the client has not produced to yet (at
		// start, after setAside or refreshParked) is partitioned only
		// when its metadata loads, and records partitioned after kgo
		// failed a refused batch of their partition (failAllRecords)
		// would go out in a new batch, starting the sequence again, which
		// Kafka takes ahead of the refused ones.
		handed := time.Now() // the chunk's wait for its answers (waitChunk) counts from here
	placing:
		for {
			switch s.waitPlaced(ctx, pw) {
			case placeAll:
				break placing
			case placeStopped:
				s.dmu.Lock()
				s.unplaced = true
				s.dmu.Unlock()
				return // stopping
			case placeLate:
				// A topic's metadata has not come, and the other topics
				// must not wait for it: its records go to a client of
				// their own, the others to a new one (withdrawLate).
				next, ok := s.withdrawLate(ctx)
				if next == pw {
					break placing // placed meanwhile
				}
				if !ok {
					// The chunk goes as before this wait, that topic's
					// records placed as its metadata comes: the order
					// risk above remains for them.
					s.log.Warn("spool drain: the Kafka client has not placed every record of a chunk after 2 s (a topic's metadata has not come) and the chunk cannot be taken back; it is sent",
						"records", pw.left.Load())
					break placing
				}
				pw, handed = next, time.Now()
			}
		}
		if len(s.chunk) == 0 {
			continue // every topic of it waits for its metadata
		}
		// The next chunk's records are read while this one flushes; what
		// becomes of them is decided once every answer of this one is in.
		flushed := make(chan error, 1)
		c := s.drainC // setAside replaces it while this flush runs
		go func() { flushed <- flushKicked(ctx, c) }()
		if !idle {
			next, _ = s.readChunk(doneCtx, next, drainChunk, drainChunkBytes, false) // an error comes again at the next Read
		}
		if err := s.waitChunk(ctx, flushed, handed); err != nil {
			return // stopping: close flushes what is left
		}
		s.ackDrained()
	}
}

// flushKicked flushes c and, while the flush waits, asks c every
// ackEvery to send what it holds. kgo places the records that waited for
// a new topic's metadata (the partitioned hook runs for each) before it
// stores the topic's partitions (storePartitionsUpdate defers the store),
// and a Flush drains only the partitions it finds when it starts: one
// begun in that gap (the drain flushes as soon as every record is placed)
// leaves the topic's records unsent, and with ManualFlushing nothing else
// sends them, until a metadata update happens to. Each Flush starts
// draining every partition it finds; one with an ended context returns
// right after that.
func flushKicked(ctx context.Context, c *kgo.Client) error {
	done := make(chan error, 1)
	go func() { done <- c.Flush(ctx) }()
	kick, cancel := context.WithCancel(context.Background())
	cancel()
	tick := time.NewTicker(ackEvery)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			_ = c.Flush(kick) // context.Canceled once it has asked every partition
		}
	}
}

// onlyParkedLocked tells (s.dmu held) whether every record in the spool
// is of a parked topic waiting for its pause or its chunk set aside:
// reading on would only copy records into memory (parkLocked), as during
// an outage every spooled record of the topics Kafka does not answer.
// The reader stays where it is instead; what it would have parked is read
// after the parked records, once their topic drains again: the same order.
func (s *spooler) onlyParkedLocked() bool {
	if len(s.parked) == 0 {
		return false
	}
	n := 0
	for t, p := range s.parked {
		if p.retrying {
			return false
		}
		n += s.sp.Pending(t)
	}
	return n > 0 && int64(n) == s.sp.Stats().Records
}

// appended wakes the drain when it reads no further (onlyParked) and
// items hold a record of a topic not parked. s.dmu is taken once per
// Append, not per record.
func (s *spooler) appended(items []*spoolItem) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if !s.onlyParked {
		return
	}
	for _, it := range items {
		if p := s.parked[it.rec.Topic]; p == nil || p.retrying {
			s.onlyParked = false
			s.wakeLocked()
			return
		}
	}
}

// ackEvery is how often the drain acks what Kafka acknowledged while a
// chunk is out; drainAside is how long a chunk waits before its client is
// set aside (setAside); drainStallWarn is how long a chunk waits before
// its outstanding records are logged (then every drainStallRepeat).
const (
	ackEvery         = 200 * time.Millisecond
	drainAside       = 2 * time.Second
	drainStallWarn   = 10 * time.Second
	drainStallRepeat = 30 * time.Second
)

// chunkWait counts a chunk's records without Kafka's answer. gate
// orders a failure's handling (drained) against withdrawLate, which
// takes the chunk back only while none is answered: withdrawn (gate
// held) tells drained to ignore the old client's answers.
type chunkWait struct {
	n         atomic.Int64
	gate      sync.Mutex
	withdrawn bool
}

// waitChunk waits for the chunk's flush (every answer of it), acking
// Kafka's acknowledgements meanwhile. A chunk not answered in full within
// drainAside of start (when it was handed to the client: the wait for its
// records' placement counts) is set aside with its client (setAside), up to maxAside at a
// time, so that a partition Kafka does not take records for (no leader,
// NOT_ENOUGH_REPLICAS: retried without end) does not hold the other
// topics' records. A chunk still waiting after drainStallWarn is logged.
func (s *spooler) waitChunk(ctx context.Context, flushed <-chan error, start time.Time) error {
	tick := time.NewTicker(ackEvery)
	defer tick.Stop()
	warn := start.Add(drainStallWarn)
	capped := false // logged that maxAside chunks are aside
	for {
		select {
		case err := <-flushed:
			return err
		case now := <-tick.C:
			s.ackDrained()
			if now.Sub(start) >= drainAside && s.setAside(ctx, flushed, start, &capped) {
				return nil
			}
			if now.After(warn) {
				warn = now.Add(drainStallRepeat)
				s.warnStall(now.Sub(start), s.chunk, s.wait)
			}
		}
	}
}

func (s *spooler) warnStall(waited time.Duration, chunk []drainRec, w *chunkWait) {
	s.log.Warn("spool drain: Kafka has not answered records of a chunk; its topics' records wait for them",
		"waiting", waited.Round(time.Second), "records", w.n.Load(), "partitions", outstanding(chunk))
}

// maxAside bounds the chunks set aside at a time (setAside), each with
// its client: past it, the drain waits for the chunk out.
const maxAside = 8

// asideChunk is a chunk set aside with its client (setAside).
type asideChunk struct {
	c     *kgo.Client
	chunk []drainRec
	wait  *chunkWait
	place *placeWait
	// topics are those parked for it: records of them in it not answered
	// (s.dmu).
	topics map[string]bool
}

// setAside sets the chunk being flushed aside with its client, unless
// maxAside chunks are aside already (then it logs it once: capped), and a
// new client takes the next chunks. The topics with records of it Kafka
// has not answered are parked (aside) until they are answered: none of
// their records goes to the new client meanwhile, so that a partition's
// records are in one client at a time, in order. Parked topics are never
// in a later chunk: the chunks aside hold disjoint sets of topics. False:
// not set aside.
func (s *spooler) setAside(ctx context.Context, flushed <-chan error, start time.Time, capped *bool) bool {
	s.dmu.Lock()
	n := len(s.aside)
	s.dmu.Unlock()
	if n >= maxAside {
		if !*capped {
			*capped = true
			s.log.Warn("spool drain: Kafka has not answered every record of a chunk and the most chunks are set aside already; the drain waits for it",
				"aside", n, "records", s.wait.n.Load(), "partitions", outstanding(s.chunk))
		}
		return false
	}
	c, err := s.drainClient()
	if err != nil {
		s.errLog.warn("spool drain: a client to drain other topics while a chunk waits failed", "err", err)
		return false
	}
	a := &asideChunk{c: s.drainC, chunk: s.chunk, wait: s.wait}
	s.dmu.Lock()
	a.place, s.place = s.place, nil
	s.parkAsideLocked(a)
	s.aside = append(s.aside, a)
	s.drainC, s.drainTopics, s.chunk, s.wait = c, map[string]bool{}, nil, &chunkWait{}
	s.dmu.Unlock()
	s.log.Info("spool drain: Kafka has not answered every record of a chunk; its topics wait for it, the others drain on",
		"waiting", time.Since(start).Round(time.Millisecond), "records", a.wait.n.Load(), "partitions", outstanding(a.chunk),
		"aside", n+1)
	s.asideWG.Add(1)
	go func() {
		defer s.asideWG.Done()
		s.awaitAside(ctx, a, flushed, start)
	}()
	return true
}

// parkAsideLocked parks the topics with records of a not answered, for a
// (s.dmu held). A refused record counts as answered only once its topic
// is parked for the refusal (drained).
func (s *spooler) parkAsideLocked(a *asideChunk) {
	a.topics = map[string]bool{}
	for i := range a.chunk {
		d := &a.chunk[i]
		if d.answered.Load() || a.topics[d.e.Topic] {
			continue
		}
		p := s.parked[d.e.Topic]
		if p == nil {
			p = &parkedTopic{topic: d.e.Topic}
			s.parked[d.e.Topic] = p
		}
		p.aside, p.retrying = true, false
		a.topics[d.e.Topic] = true
	}
}

// awaitAside acks the answers of a chunk set aside as they come (every
// ackEvery) and lets each of its topics drain again once every record of
// it in the chunk is answered; once all are, it closes the chunk's client.
func (s *spooler) awaitAside(ctx context.Context, a *asideChunk, flushed <-chan error, start time.Time) {
	tick := time.NewTicker(ackEvery)
	defer tick.Stop()
	warn := time.Now().Add(drainStallRepeat)
	for {
		select {
		case err := <-flushed:
			if err != nil {
				return // stopping: close flushes it
			}
			s.ackDrained()
			s.dmu.Lock()
			i := slices.Index(s.aside, a)
			if i < 0 {
				s.dmu.Unlock()
				return // close took it
			}
			s.aside = slices.Delete(s.aside, i, i+1)
			s.unparkAsideLocked(a)
			s.wakeLocked()
			s.dmu.Unlock()
			a.c.Close() // nothing buffered: it does not wait
			return
		case now := <-tick.C:
			s.ackDrained()
			s.dmu.Lock()
			if s.unparkAsideLocked(a) {
				s.wakeLocked()
			}
			s.dmu.Unlock()
			if now.After(warn) {
				warn = now.Add(drainStallRepeat)
				s.warnStall(now.Sub(start), a.chunk, a.wait)
			}
		case <-ctx.Done():
			return
		}
	}
}

// unparkAsideLocked lets the topics of a whose records in it are all
// answered drain again (s.dmu held), unless Kafka refused a record of
// them: then they stay parked as for any refusal. True: a topic did.
func (s *spooler) unparkAsideLocked(a *asideChunk) bool {
	if len(a.topics) == 0 {
		return false
	}
	waiting := map[string]bool{}
	for i := range a.chunk {
		if d := &a.chunk[i]; a.topics[d.e.Topic] && !d.answered.Load() {
			waiting[d.e.Topic] = true
		}
	}
	if len(waiting) == len(a.topics) {
		return false
	}
	for t := range a.topics {
		if waiting[t] {
			continue
		}
		delete(a.topics, t)
		p := s.parked[t]
		if p == nil || !p.aside {
			continue
		}
		p.aside = false
		switch {
		case p.timer: // refused meanwhile: retried after its pause
		case len(p.entries) == 0 && !p.disk:
			delete(s.parked, t)
		default:
			p.retrying = true
		}
	}
	return true
}

// outstanding names the partitions with records of the chunk Kafka has
// not answered (topic[partition]=records; partition ? when kgo has not
// placed the record yet), at most 20.
func outstanding(chunk []drainRec) string {
	type tp struct {
		topic string
		part  int32
	}
	counts := map[tp]int{}
	for i := range chunk {
		if d := &chunk[i]; !d.answered.Load() {
			counts[tp{d.e.Topic, d.part.Load() - 1}]++
		}
	}
	keys := make([]tp, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].topic != keys[j].topic {
			return keys[i].topic < keys[j].topic
		}
		return keys[i].part < keys[j].part
	})
	var b strings.Builder
	for i, k := range keys {
		if i == 20 {
			b.WriteString(" …")
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		part := "?"
		if k.part >= 0 {
			part = strconv.Itoa(int(k.part))
		}
		b.WriteString(k.topic + "[" + part + "]=" + strconv.Itoa(counts[k]))
	}
	return b.String()
}

// readFailed counts a failed read of the spool (an I/O error: lib/spool
// cuts corrupt entries itself, and the reader has not moved), logs it
// (the first failure, then at most every 10 s) and waits before the next
// read: 100 ms doubling to 5 s. False: ctx ended meanwhile.
func (s *spooler) readFailed(ctx context.Context, err error, fails int) bool {
	s.m.readErrors.Inc()
	d := min(100*time.Millisecond<<min(fails-1, 6), 5*time.Second)
	if fails == 1 {
		s.readLog.last.Store(0) // a new run of failures is logged at once
	}
	s.readLog.warn("spool drain: reading the spool failed; retrying", "attempt", fails, "retry_in", d, "err", err)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Chunks: at most drainChunk records (kgo's own MaxBufferedRecords
// default), read drainRead at a time, and their keys, values and headers
// stop once they reach drainChunkBytes (chunkFit).
const (
	drainChunk      = 10000
	drainRead       = 1000
	drainChunkBytes = 16 << 20
	// drainBatchBytes bounds the drain's record batches until a record
	// needs more (bigBatches); drainBatchOverhead is what a batch holds
	// beside a record, generously (kgo counts a batch's header and the
	// record's own framing against the limit).
	drainBatchBytes    = 64 << 10
	drainBatchOverhead = 1 << 10
)

// readChunk appends to es entries in order, until es holds n entries or
// maxBytes (entryBytes: a read of drainRead entries can pass it, chunkFit
// cuts there), waiting for the first only when wait is set.
func (s *spooler) readChunk(ctx context.Context, es []spool.Entry, n, maxBytes int, wait bool) ([]spool.Entry, error) {
	bytes := 0
	for _, e := range es {
		bytes += entryBytes(e)
	}
	rctx := ctx
	for len(es) < n && bytes < maxBytes {
		if !wait || len(es) > 0 {
			rctx = doneCtx // what is there, without waiting
		}
		k := len(es)
		var err error
		es, err = s.sp.ReadAppend(rctx, es, min(drainRead, n-len(es)))
		for _, e := range es[k:] {
			bytes += entryBytes(e)
		}
		if err != nil {
			if rctx == doneCtx && errors.Is(err, context.Canceled) {
				err = nil // no more for now
			}
			return es, err
		}
	}
	return es, nil
}

// chunkFit is how many of es, first to last, fit in a chunk with room for
// n records and maxBytes: it stops at n, or once their bytes reach
// maxBytes (the entry that reaches it is in).
func chunkFit(es []spool.Entry, n, maxBytes int) int {
	k, bytes := 0, 0
	for k < min(n, len(es)) && bytes < maxBytes {
		bytes += entryBytes(es[k])
		k++
	}
	return k
}

// doneCtx is a context that is done: Read returns what is there.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// drainRec is a spooled record in the drain client; it is its record's
// Context, to find the entry again in the promise.
type drainRec struct {
	rec kgo.Record
	e   spool.Entry
	// part is the record's partition + 1 once kgo placed it (0: not
	// yet); answered is set by its promise: for outstanding.
	part     atomic.Int32
	answered atomic.Bool
	wait     *chunkWait // its chunk's
	place    *placeWait // its chunk's
	placed   atomic.Bool
}

// placeWait counts a chunk's records not yet in a partition of the drain
// client (nor answered without one); done is closed when none is left.
type placeWait struct {
	left atomic.Int64
	done chan struct{}
}

// placed is what waitPlaced found.
type placed int

const (
	placeAll     placed = iota // every record of the chunk is placed or answered
	placeLate                  // drainAside passed first
	placeStopped               // the drain is stopping
)

// waitPlaced waits until every record of a chunk is in its partition of
// the drain client, or answered without one (pw), at most drainAside: a
// topic whose metadata does not come must not hold the other topics'
// records. (Taking such a topic out of the client instead blocks too:
// kgo's PurgeTopicsFromProducing waits for the metadata request in
// flight.)
func (s *spooler) waitPlaced(ctx context.Context, pw *placeWait) placed {
	t := time.NewTimer(drainAside)
	defer t.Stop()
	select {
	case <-pw.done:
		return placeAll
	case <-ctx.Done():
		return placeStopped
	case <-t.C:
		return placeLate
	}
}

// newPlaceWait counts n records to be placed.
func newPlaceWait(n int) *placeWait {
	pw := &placeWait{done: make(chan struct{})}
	pw.left.Store(int64(n))
	if n == 0 {
		close(pw.done)
	}
	return pw
}

// hand hands chunk to c, each record counted in w until answered and in
// pw (newPlaceWait(len(chunk))) until placed. Not with s.dmu held: kgo
// may answer a record at once (drained).
func (s *spooler) hand(c *kgo.Client, chunk []drainRec, w *chunkWait, pw *placeWait) {
	w.n.Store(int64(len(chunk)))
	for i := range chunk {
		d := &chunk[i] // where it is for good: appends moved the chunk
		d.rec.Context, d.wait, d.place = d, w, pw
		c.Produce(context.Background(), &d.rec, s.onDrained)
	}
}

// withdrawLate takes the chunk back from the drain client when the
// client has not placed every record of it within drainAside (a topic's
// metadata has not come) and has answered none: nothing of it was sent
// (ManualFlushing, no flush since it was handed). The topics with a
// record not placed get a client of their own, set aside (setAside's
// rules: parked until every record of them is answered), which is
// flushed only once it has placed every one, however long their metadata
// takes; the other topics' records go to a new drain client, handed
// again in order, and the returned placeWait counts them. The old client
// is closed; its answers (ErrClientClosed) are not counted
// (chunkWait.withdrawn). False: not taken back (a record answered
// already, maxAside chunks aside, or no client could be made); the
// caller sends the chunk as it is. Every record placed meanwhile: the
// chunk's own placeWait, nothing taken back.
func (s *spooler) withdrawLate(ctx context.Context) (*placeWait, bool) {
	w := s.wait
	w.gate.Lock()
	defer w.gate.Unlock()
	s.dmu.Lock()
	if s.place.left.Load() == 0 {
		s.dmu.Unlock()
		return s.place, true // every record placed meanwhile: nothing to take back
	}
	full := len(s.aside) >= maxAside
	s.dmu.Unlock()
	if full || w.n.Load() != int64(len(s.chunk)) {
		return nil, false
	}
	own, err := s.drainClient()
	if err != nil {
		s.errLog.warn("spool drain: a client for a topic whose metadata has not come failed", "err", err)
		return nil, false
	}
	next, err := s.drainClient()
	if err != nil {
		own.Close()
		s.errLog.warn("spool drain: a client for a topic whose metadata has not come failed", "err", err)
		return nil, false
	}
	w.withdrawn = true
	late := map[string]bool{}
	for i := range s.chunk {
		if !s.chunk[i].placed.Load() {
			late[s.chunk[i].e.Topic] = true
		}
	}
	nLate := 0
	for i := range s.chunk {
		if late[s.chunk[i].e.Topic] {
			nLate++
		}
	}
	lateRecs, others := make([]drainRec, 0, nLate), make([]drainRec, 0, len(s.chunk)-nLate)
	for i := range s.chunk {
		d := &s.chunk[i]
		to := &others
		if late[d.e.Topic] {
			to = &lateRecs
		}
		*to = (*to)[:len(*to)+1]
		(*to)[len(*to)-1].fill(d.e)
	}
	old := s.drainC
	a := &asideChunk{c: own, chunk: lateRecs, wait: &chunkWait{}}
	s.dmu.Lock()
	s.parkAsideLocked(a)
	s.aside = append(s.aside, a)
	s.drainC, s.drainTopics, s.chunk, s.wait = next, map[string]bool{}, others, &chunkWait{}
	for i := range others {
		s.drainTopics[others[i].e.Topic] = true
	}
	a.place, s.place = newPlaceWait(len(a.chunk)), newPlaceWait(len(s.chunk))
	pw, n := s.place, len(s.aside)
	s.dmu.Unlock()
	s.hand(own, a.chunk, a.wait, a.place)
	s.hand(next, s.chunk, s.wait, pw)
	s.log.Warn("spool drain: the Kafka client has not placed every record of a chunk after 2 s (a topic's metadata has not come); those topics' records wait in a client of their own, the others drain on",
		"topics", slices.Sorted(maps.Keys(late)), "records", len(lateRecs), "aside", n)
	s.asideWG.Add(2)
	go func() {
		defer s.asideWG.Done()
		old.Close() // nothing of the chunk sent: its records fail, not counted
	}()
	go func() {
		defer s.asideWG.Done()
		select {
		case <-a.place.done:
		case <-ctx.Done():
			return // stopping: close closes the client unflushed
		}
		flushed := make(chan error, 1)
		go func() { flushed <- flushKicked(ctx, own) }()
		s.awaitAside(ctx, a, flushed, time.Now())
	}()
	return pw, true
}

// fill makes d (zero) a drain record of e, not handed to any client yet.
// withdrawLate builds its records from e too, never from the ones it
// takes back: the old client may still be placing those (kgo writes their
// Timestamp and Partition).
func (d *drainRec) fill(e spool.Entry) {
	d.e = e
	d.rec = kgo.Record{Topic: e.Topic, Key: e.Key, Value: e.Value, Timestamp: e.Appended}
	if d.rec.Value == nil {
		d.rec.Value = emptyValue // never a tombstone
	}
	if len(e.Headers) > 0 {
		d.rec.Headers = make([]kgo.RecordHeader, len(e.Headers))
		for i, h := range e.Headers {
			d.rec.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
	}
}

// placedOnce counts d placed (partitioned, or answered without a partition).
func (d *drainRec) placedOnce() {
	if d.place != nil && d.placed.CompareAndSwap(false, true) && d.place.left.Add(-1) == 0 {
		close(d.place.done)
	}
}

// drainPartitioned notes each drained record's partition for the stall
// log: the record's own Partition field is kgo's to write meanwhile.
type drainPartitioned struct{}

func (drainPartitioned) OnProduceRecordPartitioned(r *kgo.Record, _ int32) {
	if d, ok := r.Context.(*drainRec); ok {
		d.part.Store(r.Partition + 1)
		d.placedOnce()
	}
}

func (*drainRec) Deadline() (time.Time, bool) { return time.Time{}, false }
func (*drainRec) Done() <-chan struct{}       { return nil }
func (*drainRec) Err() error                  { return nil }
func (*drainRec) Value(any) any               { return nil }

// addLocked adds e to the chunk (s.dmu held), unless it is larger than
// its topic's limit now (tooLargeLocked).
func (s *spooler) addLocked(e spool.Entry) {
	s.chunk = append(s.chunk, drainRec{})
	d := &s.chunk[len(s.chunk)-1]
	d.fill(e)
	if s.tooLargeLocked(d) {
		s.chunk[len(s.chunk)-1] = drainRec{}
		s.chunk = s.chunk[:len(s.chunk)-1]
		return
	}
	s.drainTopics[e.Topic] = true
	if !s.big && recordSize(d.rec.Key, d.rec.Value, d.rec.Headers) > drainBatchBytes-drainBatchOverhead {
		s.bigNeeded = true
	}
}

// drainClient makes a client for the drain: batches of at most
// drainBatchBytes until a record needs more (bigBatches).
func (s *spooler) drainClient() (*kgo.Client, error) {
	s.dmu.Lock()
	big := s.big
	s.dmu.Unlock()
	if big {
		return kgo.NewClient(s.drainOpts...)
	}
	return kgo.NewClient(s.smallOpts...)
}

// bigBatches switches the drain to clients with the topics' own batch
// limit when the chunk just read holds a record that a batch of
// drainBatchBytes could not (addLocked), before the chunk is handed to
// the client: the client holds nothing then (the chunk before was
// answered, or set aside with its client). The chunk must not go to the
// old client: kgo would refuse the large record alone and send the later
// records of its partition ahead of it. kgo makes a client without
// connecting, failing only on options these are not; should it fail
// all the same, the drain tries again every second. It reports false
// when ctx ends first.
func (s *spooler) bigBatches(ctx context.Context) bool {
	s.dmu.Lock()
	if !s.bigNeeded || s.big {
		s.dmu.Unlock()
		return true
	}
	s.big = true
	s.dmu.Unlock()
	for {
		c, err := s.drainClient()
		if err == nil {
			s.log.Info("spool drain: a record larger than the drain's batches was read; the drain now batches up to each topic's limit",
				"batch_bytes", drainBatchBytes)
			s.dmu.Lock()
			old := s.drainC
			s.drainC = c // s.drainTopics stay: the chunk's topics, handed to c next
			s.dmu.Unlock()
			old.Close() // nothing buffered: it does not wait
			return true
		}
		s.errLog.warn("spool drain: a client for records larger than a batch of the drain failed; trying again", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Second):
		}
	}
}

// tooLargeLocked holds d back when it is larger than its topic's limit
// now (s.dmu held), by the size rule /batch answers 413 by (recordSize),
// which counts at least what kgo does: kgo would fail such a record alone,
// when it is buffered, and send the later records of its partition ahead
// of it. Its topic is parked at it instead: it and every later record of
// the topic wait, in order; each retry reads the topic's
// max.message.bytes again (refreshParked) until the operator raises it.
func (s *spooler) tooLargeLocked(d *drainRec) bool {
	if s.check == nil {
		return false
	}
	size, limit := recordSize(d.rec.Key, d.rec.Value, d.rec.Headers), int(s.check.batchMaxBytes(d.e.Topic))
	if size <= limit {
		return false
	}
	s.m.drainErrors.Inc()
	p, pause := s.stopTopicLocked(d.e)
	p.limit = true
	if pause > 0 {
		s.log.Error("spool drain: a spooled record is larger than its topic's limit now; the topic's records stay in the spool, "+
			"in order, until max.message.bytes is raised (the topic's, or the broker's message.max.bytes) to at least the record's size",
			"topic", d.e.Topic, "seq", d.e.Seq, "key", keyHint(d.e.Key), "record_bytes", size, "limit_bytes", limit, "retry_in", pause)
	}
	return true
}

// keyHint is the start of a key for a log line (the partition it goes to).
func keyHint(k []byte) string {
	const max = 32
	if len(k) > max {
		return string(k[:max]) + "…"
	}
	return string(k)
}

// drained is every drained record's promise: Kafka's acknowledgement is
// acked in the spool by the drain (ackDrained, every ackEvery).
// The record counts as answered (setAside, awaitAside) only after: a
// refused record's topic is parked first, so that setAside, seeing it
// answered, need not park the topic for it, and no later record of the
// topic goes to a new client ahead of the refused one's retry.
func (s *spooler) drained(r *kgo.Record, err error) {
	d := r.Context.(*drainRec)
	if err != nil {
		// A failure can come before anything of the chunk was sent (a
		// topic kgo gave up on, the client closed): withdrawLate sees
		// it answered, or it is ignored. Kafka's acknowledgement comes
		// only after a flush, when the chunk is no longer taken back.
		d.wait.gate.Lock()
		defer d.wait.gate.Unlock()
		if d.wait.withdrawn {
			return // handed again to other clients (withdrawLate)
		}
	}
	d.placedOnce() // failed before kgo partitioned it
	defer func() {
		d.answered.Store(true)
		d.wait.n.Add(-1)
	}()
	if err != nil {
		s.refused(d.e, err)
		return
	}
	s.amu.Lock()
	s.acks = append(s.acks, d.e.Seq)
	s.amu.Unlock()
	s.dmu.Lock()
	if len(s.pause) > 0 {
		delete(s.pause, d.e.Topic)
	}
	s.dmu.Unlock()
}

// ackDrained acks the records Kafka acknowledged.
func (s *spooler) ackDrained() {
	s.amu.Lock()
	defer s.amu.Unlock()
	if len(s.acks) == 0 {
		return
	}
	s.sp.Ack(s.acks...)
	s.m.drained.Add(float64(len(s.acks)))
	s.acks = s.acks[:0]
}

// maxParkedBytes bounds the records of parked topics the drain keeps in
// memory (parkedCost): spooler.parkBudget's default.
const maxParkedBytes = 64 << 20

// parkedEntryOverhead is what a parked entry holds in memory besides its
// keys, values and headers: the spool.Entry in its topic's entries, and
// the allocations of its copies (copyRecord: a key and a value, each
// rounded up to an allocation size class).
const parkedEntryOverhead = int(unsafe.Sizeof(spool.Entry{})) + 32

// parkedCost is the memory a parked entry is counted for in parkBudget:
// its keys, values and headers, the entry itself, and each copied header
// (1-byte or empty records are bounded too).
func parkedCost(e spool.Entry) int {
	return entryBytes(e) + parkedEntryOverhead + len(e.Headers)*int(unsafe.Sizeof(spool.Header{}))
}

// parkedTopic is a topic whose record Kafka refused while draining, or
// whose records in a chunk set aside are not all answered: its records
// wait, in seq order.
type parkedTopic struct {
	topic   string
	entries []spool.Entry // in memory
	bytes   int           // entries' parkedCost (shareLocked)
	// disk: the topic's records from diskFrom on, up to the drain's read
	// position (s.readTo), are in the spool only, not in entries, whose
	// records are all older (parkReadLocked, reparkLocked); they are read
	// back from there, behind entries, while the topic is retried and has
	// room in memory (fillParked).
	disk     bool
	diskFrom uint64
	retrying bool // the pause is over: the entries go into the next chunk
	timer    bool // a pause is under way
	// aside: records of the topic are in a chunk set aside (setAside)
	// and not all answered: it is not retried until they are.
	aside bool
	// Before the next retry, a new drain client takes the topic
	// (purge), after its max.message.bytes is asked again (limit):
	// refreshParked.
	purge, limit bool
}

// wakeLocked (s.dmu held) ends the drain loop's wait, for it to feed the
// parked topics or read again.
func (s *spooler) wakeLocked() {
	if s.wakeDrain != nil {
		s.wakeDrain()
	}
}

// parkLocked puts a copy of e among p's entries, in seq order (s.dmu
// held): e's bytes share a buffer with the chunk's other entries, which
// the parked ones would keep in memory.
func (s *spooler) parkLocked(p *parkedTopic, e spool.Entry) {
	e.Record = copyRecord(e.Record)
	i := sort.Search(len(p.entries), func(i int) bool { return p.entries[i].Seq > e.Seq })
	p.entries = append(p.entries, spool.Entry{})
	copy(p.entries[i+1:], p.entries[i:])
	p.entries[i] = e
	s.addParkedLocked(p, parkedCost(e))
}

// addParkedLocked counts n bytes more (fewer: n < 0) of p's entries in
// memory (s.dmu held).
func (s *spooler) addParkedLocked(p *parkedTopic, n int) {
	p.bytes += n
	s.parkedBytes += n
}

// shareLocked is the bytes of records a parked topic may keep in memory
// (s.dmu held): parkBudget split evenly among the parked topics, so that
// a topic Kafka keeps refusing, with traffic, holds no more than its share
// and a topic taken again is read back by shares, not a record per chunk
// (fillParked reads one at least).
func (s *spooler) shareLocked() int {
	return s.parkBudget / max(len(s.parked), 1)
}

// roomLocked is what p may still read into memory (s.dmu held): up to its
// share and up to parkBudget; 0 or less when there is none.
func (s *spooler) roomLocked(p *parkedTopic) int {
	return min(s.shareLocked()-p.bytes, s.parkBudget-s.parkedBytes)
}

// parkReadLocked parks e, which Read returned, behind p's entries (s.dmu
// held): in memory while p's entries stay within its share and the parked
// entries within parkBudget; past either, e and the topic's later records
// are left in the spool (p.disk) and
// read back from there (fillParked). No record of the topic is kept in
// memory after one left in the spool.
func (s *spooler) parkReadLocked(p *parkedTopic, e spool.Entry) {
	if !p.disk && s.roomLocked(p) < parkedCost(e) {
		p.disk, p.diskFrom = true, e.Seq
	}
	if !p.disk {
		s.parkLocked(p, e)
	}
}

// fillParked reads back from the spool the records of the parked topics
// about to be retried that were left there (p.disk), behind those in
// memory, from p.diskFrom up to the drain's read position (s.readTo:
// Read's entries after it are still to be taken by the drain, which parks
// or produces them): up to a chunk, and up to the room left in its share
// and in parkBudget (roomLocked), one record at least for a topic with
// none in memory, so that it progresses whatever the other parked topics
// hold (then the parked entries pass them by a record per topic at most,
// until the chunk takes them; reparkLocked trims them back if Kafka
// refuses them). A
// topic with none left there is read by Read again: its records Read
// returns next go behind those in memory, or to Kafka once they drained.
// Called by drain only (s.readTo is its). A topic that cannot be read
// back (an I/O error: nothing moved) waits a pause, as for a refusal, and
// is read again after it; the other topics drain on. An error is
// spool.ErrClosed.
//
// What Kafka acknowledged is acked in the spool first, and again once the
// topics to read back are chosen: an unpark (unparkAsideLocked) counts a
// record answered once its promise ran, before its seq left s.acks, and
// ReadTopic returns what is not acked — a record Kafka took would be read
// back and written twice, uncounted.
func (s *spooler) fillParked() error {
	s.ackDrained()
	s.dmu.Lock()
	// A topic that held more than its share before other topics were
	// parked is trimmed to it now, not at its next refusal (up to 30 s
	// later, the other topics read back a record per chunk meanwhile).
	// Only one not retried, which is safe: a topic's records are read back
	// only when it is retried, which is after all its records in a chunk
	// were answered (its pause, or a chunk set aside: aside) and those
	// Kafka took acked (ackDrained, just above), so the trimmed entries,
	// left in the spool from diskFrom on, are read back once, in order.
	share := s.shareLocked()
	for _, p := range s.parked {
		if !p.retrying {
			s.trimLocked(p, func() bool { return p.bytes > share })
		}
	}
	var fills []*parkedTopic
	for _, p := range s.parked {
		if s.fillableLocked(p) {
			fills = append(fills, p)
		}
	}
	s.dmu.Unlock()
	// Again: a topic unparked between the ackDrained above and the lock
	// (unparkAsideLocked, on a record answered meanwhile) is among fills
	// while that record's seq may still be in s.acks; it entered s.acks
	// before the record counted answered, so it is acked now, before any
	// ReadTopic.
	s.ackDrained()
	for _, p := range fills {
		s.dmu.Lock()
		if !s.fillableLocked(p) { // the topics read back before took the room
			s.dmu.Unlock()
			continue
		}
		from, n, room := p.diskFrom, drainChunk-len(p.entries), min(s.roomLocked(p), drainChunkBytes)
		s.dmu.Unlock()
		// ReadTopic's maxBytes counts keys, values and headers only: the
		// records' count is bounded by the overhead each costs too, and
		// those past room by parkedCost are left in the spool.
		n = min(n, max(room/parkedEntryOverhead, 1))
		es, err := s.sp.ReadTopic(p.topic, from, s.readTo, n, max(room, 1))
		if errors.Is(err, spool.ErrClosed) {
			return err
		}
		if err != nil {
			s.m.readErrors.Inc()
			s.dmu.Lock()
			d := s.pauseLocked(p)
			s.dmu.Unlock()
			s.log.Error("spool drain: reading a parked topic back from the spool failed; its records stay there and are read again after a pause",
				"topic", p.topic, "seq", from, "retry_in", d, "err", err)
			continue
		}
		s.dmu.Lock()
		// A retried topic has no record in a chunk (the drain's is
		// answered, one set aside holds it back: aside), so no refusal
		// moves diskFrom meanwhile, and a topic left in the spool stays
		// parked (feedLocked): p is still s.parked's, its entries all
		// older than from.
		if len(es) == 0 {
			p.disk = false
		} else {
			cost, k := 0, 0
			for k < len(es) && (k == 0 || cost < room) { // the one that reaches room is in
				cost += parkedCost(es[k])
				k++
			}
			es = es[:k] // the others stay in the spool only, from diskFrom on
			p.diskFrom = es[len(es)-1].Seq + 1
			for _, e := range es {
				s.addParkedLocked(p, parkedCost(e))
			}
			p.entries = append(p.entries, es...)
		}
		s.dmu.Unlock()
	}
	return nil
}

// fillableLocked tells whether p is being retried with records in the
// spool only and room for them in memory (fillParked reads them back):
// neither its share nor parkBudget reached, or none of p's in memory
// (s.dmu held).
func (s *spooler) fillableLocked(p *parkedTopic) bool {
	return p.retrying && p.disk && len(p.entries) < drainChunk && (len(p.entries) == 0 || s.roomLocked(p) > 0)
}

// anyFillableLocked tells whether a parked topic is fillable (s.dmu held).
func (s *spooler) anyFillableLocked() bool {
	for _, p := range s.parked {
		if s.fillableLocked(p) {
			return true
		}
	}
	return false
}

// reparkLocked puts e back among p's parked entries, in seq order (s.dmu
// held): e was taken from them or from Read and not produced (Kafka
// refused it, it is too large, or its topic was parked meanwhile). Past
// parkBudget or p's share of it (a topic that held more before other
// topics were parked is trimmed to its share at its next refusal), p's
// newest entries in memory are left in the spool only,
// where they are not acked, and diskFrom moves back to the first of them:
// they are read back in order (fillParked), and its entries in memory
// stay older than diskFrom. e itself, from diskFrom on, stays in the
// spool only.
func (s *spooler) reparkLocked(p *parkedTopic, e spool.Entry) {
	if p.disk && e.Seq >= p.diskFrom {
		return
	}
	s.parkLocked(p, e)
	s.trimLocked(p, func() bool { return s.parkedBytes > s.parkBudget || p.bytes > s.shareLocked() })
}

// trimLocked leaves p's newest entries in memory in the spool only, while
// over tells p holds too much (s.dmu held): diskFrom moves back to the
// first of them, which are not acked there, and are read back in order
// (fillParked).
func (s *spooler) trimLocked(p *parkedTopic, over func() bool) {
	for over() && len(p.entries) > 0 {
		last := len(p.entries) - 1
		d := p.entries[last]
		p.entries[last] = spool.Entry{}
		p.entries = p.entries[:last]
		s.addParkedLocked(p, -parkedCost(d))
		p.disk, p.diskFrom = true, d.Seq
	}
}

// copyRecord copies r's key, value and headers.
func copyRecord(r spool.Record) spool.Record {
	c := spool.Record{Topic: r.Topic, Value: append([]byte{}, r.Value...)}
	if r.Key != nil {
		c.Key = append([]byte{}, r.Key...)
	}
	if len(r.Headers) > 0 {
		c.Headers = make([]spool.Header, len(r.Headers))
		for i, h := range r.Headers {
			c.Headers[i] = spool.Header{Key: h.Key, Value: append([]byte{}, h.Value...)}
		}
	}
	return c
}

// feedLocked appends to es (empty) the entries of parked topics whose
// pause is over, up to a chunk (chunkFit), oldest first per topic, and
// returns their bytes; a topic with none left (in memory, nor in the spool
// only: p.disk) is forgotten: its records are read and produced as any
// others again. A topic whose pause ended after refreshParked looked, and
// which needs its limit asked again or a new client (purge, limit), is
// left for the next round: later (s.dmu held).
func (s *spooler) feedLocked(es []spool.Entry) (_ []spool.Entry, bytes int, later bool) {
	for _, p := range s.parked {
		if !p.retrying {
			continue
		}
		if p.purge || p.limit {
			later = true
			continue
		}
		for len(es) < drainChunk && bytes < drainChunkBytes && len(p.entries) > 0 {
			e := p.entries[0]
			p.entries[0] = spool.Entry{}
			p.entries = p.entries[1:]
			s.addParkedLocked(p, -parkedCost(e))
			bytes += entryBytes(e) // a chunk's bytes: keys, values and headers
			es = append(es, e)
		}
		if len(p.entries) == 0 && !p.disk {
			delete(s.parked, p.topic)
		}
	}
	return es, bytes, later
}

// refreshParked prepares the parked topics about to be retried that Kafka
// refused as too large (or held a record too large for: limit) or as
// unknown (purge), without s.dmu (it asks the brokers): their
// max.message.bytes is asked again (limit), and the drain client is
// replaced by a new one, which builds their batches anew (kgo reads a
// partition's batch limit once, when it first produces to it; after an
// unknown topic, with the topic's current ID: kgo keeps producing to a
// deleted topic's ID, which a topic created again under its name does not
// have). The drain client holds nothing between chunks. One that was
// never handed a record of these topics has no state of them to renew: it
// is kept (a record too large waits through many retries; a new producer
// ID each time would add to the brokers' producer state).
//
// A new client, not PurgeTopicsFromProducing: purging a partition the
// idempotent client wrote to starts its sequence numbers at 0 again under
// the same producer ID, and a first batch with the sequence range of one
// the partition took from that producer (the broker keeps the last five)
// is taken for a retry of it: answered with that batch's offset, and
// dropped. A record acknowledged, removed from the spool, and not in Kafka.
func (s *spooler) refreshParked() {
	var rs []refresh
	s.dmu.Lock()
	for _, p := range s.parked {
		if p.retrying && (p.purge || p.limit) {
			rs = append(rs, refresh{p, p.limit})
		}
	}
	s.dmu.Unlock()
	if len(rs) == 0 {
		return
	}
	for _, r := range rs {
		if r.limit && s.check != nil {
			s.check.stale(r.p.topic)
			if _, err := s.check.exists(context.Background(), []byte(r.p.topic), s.afterD); err != nil {
				s.log.Warn("spool drain: reading the topic's max.message.bytes again failed", "topic", r.p.topic, "err", err)
			}
		}
	}
	s.dmu.Lock()
	renew := false
	for _, r := range rs {
		renew = renew || s.drainTopics[r.p.topic]
	}
	if !renew {
		clearRefreshedLocked(rs)
		s.dmu.Unlock()
		return
	}
	s.dmu.Unlock()
	c, err := s.drainClient()
	s.dmu.Lock()
	if err != nil {
		for _, r := range rs {
			if s.parked[r.p.topic] == r.p && r.p.retrying {
				s.pauseLocked(r.p) // tried again after a pause
			}
		}
		s.dmu.Unlock()
		s.errLog.warn("spool drain: a new client for the topics retried after a refusal failed; they wait for another pause", "err", err)
		return
	}
	old := s.drainC
	s.drainC, s.drainTopics = c, map[string]bool{}
	clearRefreshedLocked(rs)
	s.dmu.Unlock()
	old.Close() // nothing buffered: it does not wait
}

// refresh is a parked topic refreshParked prepares; limit: its
// max.message.bytes is asked again.
type refresh struct {
	p     *parkedTopic
	limit bool
}

// clearRefreshedLocked notes that rs's topics are ready for their retry
// (s.dmu held), unless refused again meanwhile (by a chunk set aside):
// then their next retry prepares them again.
func clearRefreshedLocked(rs []refresh) {
	for _, r := range rs {
		if r.p.retrying {
			r.p.purge, r.p.limit = false, false
		}
	}
}

// entryBytes is e's keys, values and headers: what a chunk counts
// (drainChunkBytes); a parked entry counts more (parkedCost).
func entryBytes(e spool.Entry) int {
	n := len(e.Key) + len(e.Value)
	for _, h := range e.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// refused parks an entry Kafka refused, with its topic's entries read
// after it, and produces them again after a pause. The drain client fails
// a record only for what time does not cure by itself: the topic no longer
// exists, writing is not allowed, the record is too large for the topic
// now, or Kafka refuses the record itself (INVALID_RECORD: a keyless
// record to a compacted topic; INVALID_TIMESTAMP). The topic's entries
// stay in the spool, in order, retried after 1 s, doubling to 30 s, until
// the operator fixes the cause; they are never dropped. Other topics keep
// draining meanwhile.
//
// MESSAGE_TOO_LARGE for records that each fit: the topic's
// max.message.bytes was lowered since the drain client built its batches
// for it; they are rebuilt for the new limit before the retry, by a new
// drain client (refreshParked). A record larger than the new limit stays
// parked: the drain holds it back before kgo has it (tooLargeLocked). kgo failing one
// alone (its limit, read when it first produced to the partition, lower
// than the one the drain checked: the limit changed in between) is not
// excluded: its topic is parked as for any refusal, but the later records
// of its partition in the same chunk may be written ahead of it, which
// nothing can take back.
//
// ErrMaxBuffered is the drain client's own limit, not Kafka's: the record
// is retried after the pause, not counted (the drain never hands the
// client more than it buffers: it does not happen).
func (s *spooler) refused(e spool.Entry, err error) {
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.stopped {
		return // kproxy is stopping: the entry stays in the spool for the next start
	}
	unknown := errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID)
	if unknown && s.check != nil {
		// Deleted: the handlers ask the brokers again, and answer a new
		// record of it 404 rather than spool it behind these.
		s.check.forget(e.Topic)
	}
	own := errors.Is(err, kgo.ErrMaxBuffered)
	if !own {
		s.m.drainErrors.Inc()
	}
	p, d := s.stopTopicLocked(e)
	if unknown {
		p.purge = true
	}
	if errors.Is(err, kerr.MessageTooLarge) {
		p.limit = true
	}
	if d == 0 {
		return
	}
	if own {
		s.log.Warn("spool drain: the drain client's buffer is full; the topic's records are produced again after a pause",
			"topic", e.Topic, "seq", e.Seq, "retry_in", d)
		return
	}
	code, reason := produceStatus(err, sendTrace{})
	s.log.Error("kafka refused a spooled record; its topic's records stay in the spool and are retried",
		"topic", e.Topic, "seq", e.Seq, "code", code, "reason", reason, "retry_in", d, "err", err)
}

// stopTopicLocked parks e among its topic's parked entries (reparkLocked)
// and starts the topic's pause, unless one is under way (s.dmu held): d is
// the pause started, 0 when none was.
func (s *spooler) stopTopicLocked(e spool.Entry) (p *parkedTopic, d time.Duration) {
	p = s.parked[e.Topic]
	if p == nil {
		p = &parkedTopic{topic: e.Topic}
		s.parked[e.Topic] = p
	}
	s.reparkLocked(p, e)
	return p, s.pauseLocked(p)
}

// pauseLocked holds p back (s.dmu held) and starts its pause, unless one
// is under way: the pause started, 0 when none was. The pause is 1 s,
// doubling to 30 s, until Kafka takes a record of the topic (drained).
func (s *spooler) pauseLocked(p *parkedTopic) (d time.Duration) {
	p.retrying = false
	if p.timer {
		return 0
	}
	p.timer = true
	d = s.pause[p.topic]
	if d == 0 {
		d = time.Second
	}
	s.pause[p.topic] = min(2*d, 30*time.Second)
	time.AfterFunc(d, func() {
		s.dmu.Lock()
		defer s.dmu.Unlock()
		p.timer = false
		if !s.stopped && s.parked[p.topic] == p && !p.aside {
			p.retrying = true
			s.wakeLocked()
		}
	})
	return d
}

// monoStart is the origin of monoNow.
var monoStart = time.Now()

// monoNow is the time since the process started, from the monotonic
// clock (never 0): a step of the wall clock changes no duration taken
// from it.
func monoNow() int64 { return int64(time.Since(monoStart)) + 1 }

// monoSince is the time since monoNow returned at.
func monoSince(at int64) time.Duration { return time.Duration(monoNow() - at) }
