package kproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// acksIndex maps the acks query value to 0 (acks=0), 1 (acks=1) or 2
// (acks=-1).
func acksIndex(acks []byte) (int, bool) {
	switch string(acks) {
	case "0":
		return 0, true
	case "", "1":
		return 1, true
	case "-1", "all":
		return 2, true
	}
	return 0, false
}

// producers are the kgo clients kproxy writes through: acks=1 (also
// carrying acks=0 records, which are answered before Kafka's answer but
// retried like acks=1 ones) and acks=-1, idempotent. With the spool,
// acks=0 records have a third client of their own, set up as the acks=1
// one (acks0): a topic's flip to the spool cancels the generation its
// gated records carry, and kgo, seeing the context of the record heading a
// partition done, fails every record queued in that partition, acks=0 ones
// answered 200 behind it too, never to be written although Kafka came
// back within their produce_timeout_ms (TestAcks0BehindAFlipDelivered).
//
//   - leader: RequiredAcks(LeaderAck), not idempotent, at most
//     max_in_flight_requests (default 1) produce requests per broker: with
//     one, a retried batch can never be overtaken by a later one of the
//     same partition, and a queued batch is always its partition's first
//     when it leaves, which is when kgo checks its record's deadline.
//     kgo waits for a request only as long as the context of its first
//     record (the deadline, or the generation a flip cancels); when that
//     ends it closes the connection and resends the request's other
//     batches, which the broker may have written already: they are then
//     in Kafka twice (TestLeaderClientResendsAbandonedRequest). kgo takes
//     idempotence only with acks=-1.
//   - all: RequiredAcks(AllISRAcks), idempotent: a retry after a lost
//     answer is deduplicated by the broker, never written twice. kgo keeps
//     up to 5 requests per broker in flight (max_in_flight_requests applies
//     to the acks=1 client only; kgo refuses it with idempotence) and
//     orders them by sequence numbers; a record in a request that is out
//     is never failed by its deadline (see below).
type producers struct {
	leader *kgo.Client
	all    *kgo.Client
	// acks0 is the acks=0 records' client: leader, or with the spool a
	// client of their own.
	acks0 *kgo.Client
	// traces know, per client, what the client wrote (see sendTrace):
	// leader's, all's, and acks0's (leader's without the spool).
	traces [3]*tracer
	// common are the options every client of kproxy shares (the
	// transactional ones too: txnPool).
	common []kgo.Opt
	batch  batchHook

	// shut is set, under shutMu, as the clients start closing: an acks=0
	// record is answered 200 once handed to its client, and handed after
	// (a request whose body ended during the shutdown's last second) the
	// closed client failed it at once (TestAcks0AfterKafkaClosedRefused).
	// acks=0 records are handed over under shutMu.RLock, refused once
	// shut.
	shutMu sync.RWMutex
	shut   bool

	health struct {
		mu    sync.Mutex
		at    time.Time
		ok    bool
		pings atomic.Int64 // for tests of the cache
	}
}

// producerHooks are what the clients report to the server.
type producerHooks struct {
	batchRecords  interface{ Observe(float64) } // records per batch written
	batchMaxBytes func(topic string) int32      // the largest batch a topic takes
	epochChanged  func(from, to [2]int64)       // the acks=-1 client's producer id and epoch (epochWatch)
}

// epochWatch follows the producer id and epoch of the records a client
// wrote. Kafka's client (as patched: third_party/franz-go) moves to a new
// epoch after it gave up a batch a broker may hold, or purged a topic, so
// that no later batch is taken for a retry of a held one (and, unpatched
// too, when a broker forgot the producer: OUT_OF_ORDER_SEQUENCE_NUMBER,
// UNKNOWN_PRODUCER_ID); a batch being retried across the change may be
// written twice. Nothing else tells it: changed is told of each move, from
// the epoch 0 a new producer id starts at.
type epochWatch struct {
	cur     atomic.Pointer[[2]int64] // producer id, epoch
	mu      sync.Mutex
	changed func(from, to [2]int64)
}

func (w *epochWatch) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	if err != nil || r.ProducerID < 0 {
		return
	}
	now := [2]int64{r.ProducerID, int64(r.ProducerEpoch)}
	if p := w.cur.Load(); p != nil && *p == now {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.cur.Load()
	// A record of the old epoch acknowledged after one of the new (other
	// partitions' requests were out) is not a change back.
	if p != nil && (*p == now || p[0] == now[0] && p[1] > now[1]) {
		return
	}
	n := now // escapes only here, not for every record
	w.cur.Store(&n)
	from := [2]int64{now[0], 0}
	if p != nil {
		from = *p
	}
	if from != now && w.changed != nil {
		w.changed(from, now)
	}
}

// newProducers builds the Kafka clients and waits for a broker to answer,
// until kafka.dial_timeout_ms (at least 2 s; a broker that accepts and
// does not answer holds kgo for 10 s) or until ctx ends (a stop during
// start-up: then it fails at once, spool or not).
func newProducers(ctx context.Context, cfg Config, log *slog.Logger, hooks producerHooks) (*producers, error) {
	base, err := cfg.Kafka.Opts("kproxy", cfg.BrokerHosts, log)
	if err != nil {
		return nil, err
	}
	partitioner := kgo.StickyKeyPartitioner(nil) // murmur2 like the Java client; keyless: sticky
	if cfg.Partitioner == "fnv1a" {
		partitioner = kgo.StickyKeyPartitioner(func(key []byte, n int) int { return int(fnv1aPartition(key, int32(n))) })
	}
	timeout := time.Duration(cfg.ProduceTimeoutMs) * time.Millisecond
	bufferedMax := 2*min(cfg.ReqPoolSize, (math.MaxInt-1000)/2) + 1000
	common := append(base,
		kgo.RecordPartitioner(partitioner),
		kgo.ProducerBatchCompression(codecs[cfg.Compression]),
		kgo.ProducerLinger(time.Duration(cfg.LingerMs)*time.Millisecond),
		// Batches fit the topic's max.message.bytes (and max_message_bytes):
		// kgo does not split a batch the broker refuses as too large.
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxMessageBytes)),
		kgo.ProducerBatchMaxBytesFn(hooks.batchMaxBytes),
		// Every record carries its own deadline (produce_timeout_ms, its
		// context); this is the same bound where kgo looks at batches
		// (kgo's floor is 1 s).
		kgo.RecordDeliveryTimeout(max(timeout, time.Second)),
		// The broker's own wait for replicas: a REQUEST_TIMED_OUT answer
		// then comes only after the client's deadline passed.
		kgo.ProduceRequestTimeout(timeout),
		kgo.RetryBackoffFn(retryBackoff),
		// kproxy bounds what it hands to a client below this (req_pool_size
		// requests in flight, as many acks=0 records being delivered, and
		// room: records answered 504 that kgo keeps), so Produce never
		// blocks on a full buffer (capped: for a huge req_pool_size, 2 × it
		// overflowed).
		kgo.MaxBufferedRecords(bufferedMax),
	)
	if cfg.AutoCreateTopics {
		common = append(common, kgo.AllowAutoTopicCreation())
	}
	ps := &producers{common: common[:len(common):len(common)], batch: batchHook{hooks.batchRecords}}
	for i := range ps.traces {
		ps.traces[i] = &tracer{room: room{max: int64(bufferedMax) - 1}}
	}
	// Above one request per broker the acks=1 client sends a partition's
	// next batch while the one before is out (no sequence numbers that
	// would make the broker refuse it after a refusal of the first).
	ps.traces[0].pipelined = cfg.MaxInFlightRequests > 1
	ps.traces[1].idempotent = true
	batch := ps.batch
	compressor, err := kgo.DefaultCompressor(codecs[cfg.Compression])
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	leaderClient := func(tr *tracer) (*kgo.Client, error) {
		return kgo.NewClient(append(common[:len(common):len(common)],
			kgo.RequiredAcks(kgo.LeaderAck()),
			kgo.DisableIdempotentWrite(),
			kgo.MaxProduceRequestsInflightPerBroker(cfg.MaxInFlightRequests),
			kgo.WithHooks(tr, batch, &tr.room),
			// The acks=1 client can fail a batch built into a request whose
			// write has not returned (see tracer.built).
			kgo.WithCompressor(builtCounter{compressor, &tr.built}),
		)...)
	}
	ps.leader, err = leaderClient(ps.traces[0])
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	if cfg.SpoolDir == "" {
		ps.acks0, ps.traces[2] = ps.leader, ps.traces[0]
	} else {
		ps.traces[2].pipelined = ps.traces[0].pipelined
		if ps.acks0, err = leaderClient(ps.traces[2]); err != nil {
			ps.leader.Close()
			return nil, fmt.Errorf("kafka client: %w", err)
		}
	}
	ps.all, err = kgo.NewClient(append(common[:len(common):len(common)],
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Not AllowIdempotentProduceCancellation: failing a request that
		// is out rewinds the partition's sequence number, and when the
		// broker wrote that request after all, the partition's next
		// batch goes out with its sequence numbers; with as many records
		// the broker takes it for a retry of the written one, answers
		// success with the old offset and drops it: records answered
		// 200 and not in Kafka. So kgo fails a record by its deadline
		// only before its request leaves; one in a request that is out
		// waits for the broker's answer inside kgo, while its handler
		// answers 504 at the deadline and ignores the late outcome.
		kgo.WithHooks(ps.traces[1], batch, &ps.traces[1].room, &epochWatch{changed: hooks.epochChanged}),
	)...)
	if err != nil {
		ps.leader.Close()
		if ps.acks0 != ps.leader {
			ps.acks0.Close()
		}
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, max(2*time.Second, time.Duration(cfg.Kafka.DialTimeoutMs)*time.Millisecond))
	defer cancel()
	pinged := make(chan error, 1)
	// kgo heeds the context only once a connection is set up: a broker
	// that does not answer its ApiVersions holds Ping for kgo's request
	// timeout overhead (10 s). A stop does not wait for that; closing the
	// clients ends the Ping.
	go func() { pinged <- ps.leader.Ping(pingCtx) }()
	select {
	case err = <-pinged:
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	if err != nil {
		if cfg.SpoolDir == "" || ctx.Err() != nil {
			ps.close(context.Background())
			return nil, fmt.Errorf("connect to kafka %v: %w", cfg.BrokerHosts, err)
		}
		// With the spool kproxy takes records while Kafka is away, also
		// from its start (after a crash during an outage): they spool.
		log.Warn("no kafka broker answers; starting anyway, records go to the spool until one does",
			"brokers", cfg.BrokerHosts, "err", err)
	}
	return ps, nil
}

var codecs = map[string]kgo.CompressionCodec{
	"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
	"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
}

// retryBackoff waits 10, 20, 40 … ms, at most 200 ms, with jitter, before
// a retry: a leader election is over in a few hundred ms, and kgo's
// default (250 ms doubling to 5 s) would use up produce_timeout_ms.
func retryBackoff(fails int) time.Duration {
	d := 200 * time.Millisecond
	if fails < 5 {
		d = 10 * time.Millisecond << max(fails-1, 0)
	}
	return d/2 + rand.N(d/2+1)
}

// enterAcks0 tells whether acks=0 records may be handed to the clients:
// then until leaveAcks0, the clients stay open.
func (ps *producers) enterAcks0() bool {
	ps.shutMu.RLock()
	if ps.shut {
		ps.shutMu.RUnlock()
		return false
	}
	return true
}

func (ps *producers) leaveAcks0() { ps.shutMu.RUnlock() }

// notOpen is the reason of an acks=0 record refused as the clients close.
const notOpen = "kproxy is shutting down; the record was not written"

// client is the client for an acks index.
func (ps *producers) client(acks int) (*kgo.Client, *tracer) {
	switch acks {
	case 2:
		return ps.all, ps.traces[1]
	case 0:
		return ps.acks0, ps.traces[2]
	}
	return ps.leader, ps.traces[0]
}

// clients are the distinct clients (acks0 once, when it is leader).
func (ps *producers) clients() []*kgo.Client {
	if ps.acks0 == nil || ps.acks0 == ps.leader {
		return []*kgo.Client{ps.leader, ps.all}
	}
	return []*kgo.Client{ps.leader, ps.all, ps.acks0}
}

// notIdempotent tells whether cl is the acks=1 client or the acks=0 one.
func (ps *producers) notIdempotent(cl *kgo.Client) bool {
	return cl == ps.leader || cl == ps.acks0
}

// close flushes the clients until ctx ends (acks=0 records still being
// delivered included), then closes them; records left fail with
// kgo.ErrClientClosed.
func (ps *producers) close(ctx context.Context) error {
	ps.shutMu.Lock()
	ps.shut = true
	ps.shutMu.Unlock()
	var errs []error
	for _, cl := range ps.clients() {
		if cl == nil {
			continue
		}
		// Flush fails once ctx is over (the shutdown's closing without
		// a flush) even with nothing buffered: an error only when
		// records are left.
		if err := cl.Flush(ctx); err != nil {
			if n := cl.BufferedProduceRecords(); n > 0 {
				errs = append(errs, fmt.Errorf("flush: %d records not delivered: %w", n, err))
			}
		}
	}
	for _, cl := range ps.clients() {
		if cl != nil {
			cl.Close()
		}
	}
	return errors.Join(errs...)
}

// reachable reports whether a broker answered within the last second,
// asking one (a metadata request, at most 1 s) when the last answer is
// older.
func (ps *producers) reachable() bool {
	h := &ps.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if time.Since(h.at) < time.Second {
		return h.ok
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	h.pings.Add(1)
	h.ok = ps.leader.Ping(ctx) == nil
	h.at = time.Now()
	return h.ok
}

// fnv1aPartition routes as sarama's NewHashPartitioner did by default,
// which is how the 2015 suite placed keys.
func fnv1aPartition(key []byte, n int32) int32 {
	h := uint32(2166136261)
	for _, c := range key {
		h ^= uint32(c)
		h *= 16777619
	}
	p := int32(h) % n
	if p < 0 {
		p = -p
	}
	return p
}

// tracer counts, for one client, the produce requests it wrote, those
// that came to an end (answered, or their connection broke), and those of
// them whose answer never came (the connection broke after the write, the
// request was cancelled while its answer was awaited, the client was
// closed), and for the acks=1 client the record batches it built into
// requests. A record notes the counts when it is handed to the client;
// when it fails, the counts tell whether it can have left (sendTrace).
//
// Counting every request of the client, not the record's own, is coarse
// but sound: a record that could have been in a request was buffered
// before the request was written, so the request is counted as written
// after the record's note and before the record's failure (kgo calls the
// write hook right after the write). A request whose end is not counted
// yet when the record fails (kgo fails a broken connection's requests
// before it calls the end hook) shows as out.
type tracer struct {
	written atomic.Int64
	ended   atomic.Int64
	lost    atomic.Int64
	// endTxns counts the EndTxn requests written (a transactional
	// client's commits and aborts, kgo's resends included): a commit
	// written twice whose second was refused may have been applied by the
	// first (txnPool.commit).
	endTxns atomic.Int64
	// order gives the records handed to the client the contexts kgo
	// checks before it sends them (sendOrder).
	order sendOrder
	// built counts the record batches the acks=1 client built into
	// produce requests (builtCounter). kgo builds a request's batches
	// into its bytes, then writes them, and only then calls the write
	// hook; meanwhile it can fail the batch's records: on the refusal of
	// an earlier batch of the partition (with max_in_flight_requests
	// above 1 that batch is out when the next is built, and a broker
	// reading a connection's requests one at a time leaves the next
	// one's write unfinished until it answered), or on a metadata error.
	// The records are then failed before any count of written requests
	// moved, while their bytes go out after all, to a broker that may
	// write them (TestPipelinedRecordBeingWrittenNot503). A batch is
	// counted while kgo holds its lock, which the failure takes too: a
	// record failed after its batch was built sees the count moved.
	// (A failure other than a refusal is 504 only with a request out,
	// and a request being written is not counted as out: a metadata
	// error failing a batch in the instant between its building and the
	// end of its write, with no other request out, is still answered
	// by that error (404, 503); counting that instant as out would make
	// every failed record that was ever sent unsure.)
	// Not counted by the idempotent client: kgo fails a batch built into
	// a request only on an answer, its own or the refusal of an earlier
	// batch of the partition, and the broker refuses the batches after a
	// refused one by their sequence numbers.
	built atomic.Int64
	// pipelined: the client may have several produce requests of one
	// partition out at once, and is not idempotent.
	pipelined bool
	// idempotent: the client retries a batch the broker appended and
	// answered REQUEST_TIMED_OUT or NOT_ENOUGH_REPLICAS_AFTER_APPEND.
	idempotent bool
	// room bounds the records handed to the acks=1 and acks=-1 clients.
	room room
}

// room counts the records handed to a Kafka client whose promise has not
// been called yet, and keeps them below the client's MaxBufferedRecords.
// The places of req_pool_size do not: a record answered 504 at its
// deadline gives its place back while the client keeps it (the acks=-1
// client never fails a record it is unsure was written: a partition
// answering REQUEST_TIMED_OUT holds its records and every one queued
// behind them). Once full, Produce blocked, with the topic's spool gate
// held and a context that only the gate's flip ends: the flip waited for
// the gate, and the request, and every later one of the topic, hung
// (TestFullClientBufferRefusedNotHung). Records are refused (503) instead.
// kgo counts a record off after its promise returned, room before (its
// hook runs first): kgo's count is at most room's plus the one record whose
// promise runs (one at a time per client), below the buffer's limit.
type room struct {
	held atomic.Int64
	max  int64
}

// take takes n places, all or none.
func (r *room) take(n int) bool {
	if r.held.Add(int64(n)) > r.max {
		r.held.Add(int64(-n))
		return false
	}
	return true
}

// give gives back n places of records that did not go to the client.
func (r *room) give(n int) { r.held.Add(int64(-n)) }

// OnProduceRecordUnbuffered gives back the place of a record the client
// answered (every record handed to it, written, failed or refused, once).
func (r *room) OnProduceRecordUnbuffered(*kgo.Record, error) { r.held.Add(-1) }

// noRoom is the reason of a record refused for a full room.
const noRoom = "overloaded: kafka's client holds as many records as it may (records answered 504 that it still sends); the record was not written"

func (t *tracer) note() sendNote { return sendNote{t.written.Load(), t.lost.Load(), t.built.Load()} }

// since is what happened after note n was taken.
func (t *tracer) since(n sendNote) sendTrace {
	ended := t.ended.Load() // before written: a request written meanwhile counts as out
	written := t.written.Load()
	return sendTrace{wrote: written != n.written || t.built.Load() != n.built, rewrote: written-n.written > 1,
		lost: t.lost.Load() != n.lost, out: written != ended, pipelined: t.pipelined, idempotent: t.idempotent}
}

// builtCounter is the acks=1 client's compressor: kgo hands it every
// record batch it builds into a produce request, under the batch's lock,
// before the request is written (and only then). It counts the batch
// (tracer.built) and compresses as the configured codec does.
type builtCounter struct {
	kgo.Compressor // nil: no compression
	built          *atomic.Int64
}

func (b builtCounter) Compress(dst *bytes.Buffer, src []byte, flags ...kgo.CompressFlag) ([]byte, kgo.CompressionCodecType) {
	b.built.Add(1)
	if b.Compressor == nil {
		return nil, kgo.CodecNone // kgo writes the batch as it is
	}
	return b.Compressor.Compress(dst, src, flags...)
}

// OnBrokerWrite counts a produce request as written as soon as any byte of
// it reached the socket.
func (t *tracer) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, n int, _, _ time.Duration, _ error) {
	switch {
	case key == 0 && n > 0:
		t.written.Add(1)
	case key == 26 && n > 0: // EndTxn
		t.endTxns.Add(1)
	}
}

// OnBrokerE2E comes once for every request written, at its end: its
// answer read, or its connection broken (then it is lost).
func (t *tracer) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e kgo.BrokerE2E) {
	if key != 0 || e.BytesWritten == 0 {
		return
	}
	if e.Err() != nil {
		t.lost.Add(1)
	}
	t.ended.Add(1)
}

type sendNote struct{ written, lost, built int64 }

// sendTrace is what a record's client did between the record's buffering
// and its failure.
type sendTrace struct {
	// wrote: a produce request was written, or (acks=1) a batch built
	// into one: the record may have left.
	wrote bool
	// rewrote: more than one produce request was written: the record's
	// batch may have been sent more than once (a retry).
	rewrote bool
	lost    bool // a written produce request got no answer: it may have been written
	out     bool // at the failure, a written produce request had not come to its end
	// pipelined: the client may have had a later request of the record's
	// partition out (tracer.pipelined).
	pipelined bool
	// idempotent: a second request (rewrote) may have been a retry of a
	// batch the broker had appended (tracer.idempotent).
	idempotent bool
}

// batchHook observes the records per batch Kafka accepted.
type batchHook struct{ h interface{ Observe(float64) } }

func (b batchHook) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	b.h.Observe(float64(m.NumRecords))
}
