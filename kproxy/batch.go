package kproxy

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"
)

// This file is the core of batches, whatever carries them (POST /batch
// today, gRPC later): a transport parses its request into batchRecords,
// authenticates the client (access.authenticate), admits the records
// (admitBatch), checks them (checkBatch) and writes them (produceBatch).

// Limits of a batch besides max_batch_records.
const (
	// maxRecordHeaders is the most headers a record may carry (DESIGN).
	maxRecordHeaders = 64
	// maxBatchTopics bounds the distinct topics of one batch: a topic not
	// seen before costs a metadata request (and a describe-configs one)
	// while the batch is checked, one after the other.
	maxBatchTopics = 100
	// headerOverhead is what a header adds to its key and value in a
	// record, at most: two length varints.
	headerOverhead = 10
)

// recordSize is a record's size in a batch of its own, at most, as kgo
// counts it (recordOverhead, headerOverhead): the size /batch answers 413
// for, and the spool's drain holds a record back for.
func recordSize(key, value []byte, headers []kgo.RecordHeader) int {
	size := len(key) + len(value) + recordOverhead
	for _, h := range headers {
		size += len(h.Key) + len(h.Value) + headerOverhead
	}
	return size
}

// batchRecord is one record of a batch as a transport read it. Its slices
// must stay untouched until the records are answered: kgo holds them.
type batchRecord struct {
	topic   []byte // as sent
	key     []byte // empty: no key (any partition)
	value   []byte
	headers []kgo.RecordHeader

	name string // the topic, as checkBatch found it known to exist
}

// batchError refuses a whole batch before anything is written: its
// status, the index of the first bad record (-1: the batch as a whole)
// and the reason. retryAfter is the seconds to tell a 429 or 503.
type batchError struct {
	status     int
	index      int
	reason     string
	retryAfter int
	// kafka: the refusal is Kafka's answer (or silence) on a topic's
	// look-up, counted in kproxy_produce_errors_total as /commit's is.
	kafka bool
}

func refuse(status, index int, reason string) *batchError {
	if index >= 0 {
		reason = "record " + strconv.Itoa(index) + ": " + reason
	}
	return &batchError{status: status, index: index, reason: reason}
}

// recordResult is what became of one record of a batch.
type recordResult struct {
	status    int // 200: written; 202: spooled
	partition int32
	offset    int64 // -1: not known (acks=0)
	reason    string
}

// batchOutcome is the answer to a batch that was written, or tried to be:
// status 200 (every record written), 207 (some were not), or the one
// status every record got; index is the first record not written (-1:
// none) and reason says why for a status other than 200.
type batchOutcome struct {
	results []recordResult
	status  int
	index   int
	reason  string
	// inLog: records of the batch may be in Kafka's log whatever the
	// status (an aborted transaction's, 503 all the same).
	inLog bool
	// settled, for acks=0 records answered at once: closed once Kafka's
	// client holds none of them (a stream's next request through another
	// client waits for it, as for an earlier request's batchCall).
	settled chan struct{}
}

// givesBack tells whether the batch's records go back to the client's
// rate limit (access.giveBack): refused as a whole with 503, none of them
// in Kafka's log.
func (o batchOutcome) givesBack() bool { return o.status == 503 && !o.inLog }

// admitBatch takes n records from req_pool_size: a batch's records count
// one by one, as requests of one record would. The caller gives them back
// with releaseBatch once the batch is answered.
func (s *Server) admitBatch(n int) *batchError {
	if n > s.cfg.ReqPoolSize {
		return refuse(413, s.cfg.ReqPoolSize, "a batch of "+strconv.Itoa(n)+
			" records is larger than req_pool_size ("+strconv.Itoa(s.cfg.ReqPoolSize)+")")
	}
	if v := s.inFlight.Add(int64(n)); v > int64(s.cfg.ReqPoolSize) {
		s.inFlight.Add(int64(-n))
		return &batchError{status: 503, index: -1, retryAfter: 1,
			reason: "overloaded: req_pool_size records in flight; the batch was not written"}
	}
	return nil
}

func (s *Server) releaseBatch(n int) { s.inFlight.Add(int64(-n)) }

// releaseCall gives back the n places of a request whose records went
// through c (its job's call: the zero call when none was handed to
// Kafka): at once, unless the call was cancelled (its client left), or
// answered at its own deadline before its records' (a gRPC call's), while
// Kafka's client still held some of them. Those keep their places until
// Kafka answered them (settled) or, as an answer would, until their
// deadline and answerGrace passed: a client cancelling call after call, or
// giving each a deadline shorter than produce_timeout_ms during an outage,
// would otherwise heap many times req_pool_size records in Kafka's client.
// c's channels are read now: c is reused once its job is released.
func (s *Server) releaseCall(c *batchCall, n int) {
	early := c.acks != 0 && c.deadline != nil && c.deadline.Err() == nil // acks=0 records are bounded apart (acks0Out)
	if !c.cancelled && !early {
		s.releaseBatch(n)
		return
	}
	settled, deadline := c.settled, c.deadline
	select {
	case <-settled:
		s.releaseBatch(n)
		return
	default:
	}
	go func() { // ends by the records' deadline and answerGrace
		select {
		case <-settled:
		case <-deadline.Done():
			grace := time.NewTimer(answerGrace)
			select {
			case <-settled:
			case <-grace.C:
			}
			grace.Stop()
		}
		s.releaseBatch(n)
	}()
}

// checkBatch checks every record of a batch, in order, before anything is
// written: its topic's name, that it is not Kafka's own, that the client
// (rule; nil: no clients configured) may write to it by acl (the rules the
// client was found by: one set for the whole request, whatever a reload
// stores meanwhile), that it exists, and
// the record's size against max_message_bytes and the topic's
// max.message.bytes. The first bad record refuses the batch. Then the
// batch's records are taken from the client's rate limit, all or none. It
// sets each record's name. The topics' look-ups end with dl, the
// records' deadline (recordsDeadline): one after the other, they share it.
// For records that may be spooled, the first look-up no broker answered
// within spool_after_ms (its topic spools: topicFor) leaves the later ones
// what is left of that spool_after_ms, nothing once spent: no broker
// answering, a batch of topics not known yet spools after spool_after_ms,
// not that long again for each topic in turn. A look-up whose metadata a
// broker answered in time (its describe-configs answered or not: lookup)
// leaves the next one spool_after_ms of its own, as a batch of one topic
// has, so that a slow but reachable Kafka does not make topics spool; so
// does the reading again of a compacted topic (refusesKeyless).
func (s *Server) checkBatch(dl context.Context, acl *access, rule *clientRule, recs []batchRecord, now time.Time, spoolable bool) *batchError {
	type known struct {
		info topicInfo
		err  *batchError // refused for this topic: every record naming it is
	}
	var after context.Context // spent: no broker answered a topic's metadata within it
	lookup := func() context.Context {
		if after != nil || !spoolable {
			return after
		}
		return s.spool.after.get()
	}
	topics := make(map[string]known, 1)
	var last []byte
	var cur known
	for i := range recs {
		r := &recs[i]
		if i == 0 || string(r.topic) != string(last) {
			k, seen := topics[string(r.topic)]
			if !seen {
				if len(topics) == maxBatchTopics {
					return refuse(400, i, "more than "+strconv.Itoa(maxBatchTopics)+" distinct topics in one batch")
				}
				l := lookup()
				var blind bool
				k.info, blind, k.err = s.checkTopic(dl, acl, rule, r.topic, spoolable, l)
				if blind {
					after = l
				}
				topics[string(r.topic)] = k
			}
			last, cur = r.topic, k
		}
		if cur.err != nil {
			e := *cur.err
			e.index, e.reason = i, "record "+strconv.Itoa(i)+": "+e.reason
			if e.kafka {
				// None of the batch's records is written.
				s.metrics.produceErrors.WithLabelValues(strconv.Itoa(e.status)).Add(float64(len(recs)))
			}
			return &e
		}
		size := recordSize(r.key, r.value, r.headers)
		if size > s.cfg.MaxMessageBytes {
			return refuse(413, i, "record of "+strconv.Itoa(size)+" bytes larger than max_message_bytes ("+strconv.Itoa(s.cfg.MaxMessageBytes)+")")
		}
		if size > int(cur.info.maxBytes) {
			return refuse(413, i, "record of "+strconv.Itoa(size)+" bytes larger than the topic's max.message.bytes ("+strconv.Itoa(int(cur.info.maxBytes))+")")
		}
		if len(r.key) == 0 && cur.info.compacted {
			var refused bool
			if cur.info, refused = s.check.refusesKeyless(dl, cur.info, s.lookupTimeout(spoolable, lookup())); refused {
				return refuse(400, i, keylessCompacted(cur.info.name))
			}
			topics[string(r.topic)] = cur // read again: not for each keyless record
		}
		r.name = cur.info.name
	}
	if v, first := acl.take(rule, len(recs), now); v.code != 0 {
		e := refuse(v.code, first, v.reason)
		e.retryAfter = v.retryAfter
		return e
	}
	return nil
}

// checkTopic decides whether records may be written to topic t: the
// topic's details, or why not (index -1, set by the caller). after is
// the look-up's spool_after_ms (nil: not spoolable; topicFor); blind:
// no broker answered the topic's metadata within it (topicFor).
func (s *Server) checkTopic(dl context.Context, acl *access, rule *clientRule, t []byte, spoolable bool, after context.Context) (_ topicInfo, blind bool, _ *batchError) {
	if len(t) == 0 {
		return topicInfo{}, false, refuse(400, -1, "no topic: give it in the record or as the topic parameter")
	}
	if reason := checkTopicName(t); reason != "" {
		return topicInfo{}, false, refuse(400, -1, reason)
	}
	if len(t) > 1 && t[0] == '_' && t[1] == '_' {
		return topicInfo{}, false, refuse(403, -1, "kafka-internal topics (starting with __) are not writable")
	}
	if v := acl.permit(rule, string(t)); v.code != 0 {
		return topicInfo{}, false, refuse(v.code, -1, v.reason+" ("+string(t)+")")
	}
	info, blind, err := s.topicFor(dl, t, spoolable, after)
	if err != nil {
		// A metadata or describe-configs request, perhaps cut by the
		// deadline: nothing written.
		code, reason := produceStatus(err, sendTrace{})
		e := refuse(code, -1, reason+" ("+string(t)+")")
		e.kafka = true
		if code >= 500 {
			e.retryAfter = 1
		}
		return topicInfo{}, blind, e
	}
	return info, blind, nil
}

// batchJob is one batch's memory, reused from batch to batch: the
// transport's copy of its request (body; nil when the transport keeps its
// own), its records, the records on their way to Kafka (items) and their
// results. The transport holds a reference, and so does each record kgo
// holds; the last to let go gives the memory back (release), so a record
// that kgo answers after its batch was answered (504, acks=0) never finds
// it reused.
type batchJob struct {
	body    []byte
	recs    []batchRecord
	items   []batchItem
	results []recordResult
	call    batchCall
	refs    atomic.Int64

	// timeout is produce_timeout_ms from the request's arrival, set by the
	// transport when it has read the request (a stream's: when the stream
	// takes it, see produceStream.start; nil: from the records'
	// hand-over). deadline, when a transport sets it, is the records'
	// deadline instead (a gRPC deadline that ends sooner); bound names it
	// in answers ("the request's deadline").
	timeout  context.Context
	deadline context.Context
	bound    string
	// noSpool: the request said spool=0 (Kafka's answer or an error).
	noSpool bool
	// held is what a gRPC message's body (its copy, body) holds in bodies,
	// max_body_bytes_in_flight, given back once the job is released by
	// every holder (Kafka's client's included): holdMessage.
	held   int64
	bodies *bodyBudget
}

var jobPool = sync.Pool{New: func() any { return new(batchJob) }}

// maxPooledRecords bounds the records (and 1 MiB the body) a pooled job
// keeps: a larger batch's memory is left to the garbage collector.
const maxPooledRecords = 1024

// getBatchJob returns a job with the transport's reference.
func getBatchJob() *batchJob {
	j := jobPool.Get().(*batchJob)
	j.refs.Store(1)
	return j
}

// compactSlack is how many bytes a request's body may hold beyond twice
// its records' before they are copied out of it (compact).
const compactSlack = 64 << 10

// compact copies the records' bytes out of the request's body into a
// buffer of their size when the body is much larger than they are (a gRPC
// message padded with fields kproxy skips, JSON with room between its
// records), and lets the body go. Kafka's client holds the records until
// they are answered — past the request's own answer at acks=0, or past
// its deadline — and each held the whole body: req_pool_size acks=0
// records of 10 MiB messages were 100 GiB, where /commit, which copies
// its record, holds the records only. Only what points into the body is
// counted and copied: a record's topic is not read after checkBatch (it
// is let go), and the values kproxy made (unescaped JSON, ext headers
// shared by a request's records) are in buffers of their own.
func (j *batchJob) compact() {
	n := 0
	count := func(b []byte) {
		if j.inBody(b) {
			n += len(b)
		}
	}
	for i := range j.recs {
		r := &j.recs[i]
		count(r.key)
		count(r.value)
		for _, h := range r.headers {
			count(h.Value)
		}
	}
	if len(j.body) <= 2*n+compactSlack {
		return
	}
	buf := make([]byte, 0, n)
	keep := func(b []byte) []byte {
		switch {
		case !j.inBody(b):
			return b // nil, or a buffer of its own: stays so
		case len(b) == 0:
			return emptyValue // empty, not null, and no longer the body's
		}
		buf = append(buf, b...)
		return buf[len(buf)-len(b) : len(buf) : len(buf)]
	}
	for i := range j.recs {
		r := &j.recs[i]
		r.topic, r.key, r.value = nil, keep(r.key), keep(r.value)
		if len(r.headers) > 0 {
			hs := make([]kgo.RecordHeader, len(r.headers)) // a request's records may share theirs
			for k, h := range r.headers {
				hs[k] = kgo.RecordHeader{Key: h.Key, Value: keep(h.Value)}
			}
			r.headers = hs
		}
	}
	j.body = nil // the next use of a pooled job makes its own
	if j.held > 0 {
		// The body's hold (holdMessage) becomes the records' copy's.
		keep := int64(cap(buf))
		if keep <= bodyFloor {
			keep = 0
		}
		j.bodies.give(j.held - keep)
		j.held = keep
	}
}

// inBody reports whether b points into j's body; an empty b does too
// when sliced from it ("" in JSON or msgpack, a gRPC header sent empty),
// and held the whole body as well as a full one.
func (j *batchJob) inBody(b []byte) bool {
	if b == nil || cap(j.body) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(j.body)))
	return p >= lo && p < lo+uintptr(cap(j.body))
}

// release lets go of one reference.
func (j *batchJob) release() {
	if j.refs.Add(-1) != 0 {
		return
	}
	if j.held > 0 {
		j.bodies.give(j.held)
		j.held, j.bodies = 0, nil
	}
	if cap(j.items) > maxPooledRecords || cap(j.recs) > maxPooledRecords || cap(j.body) > 1<<20 {
		return
	}
	for i := range j.items {
		j.items[i].err = nil // nothing kept alive by a pooled job
	}
	j.body, j.recs, j.results = j.body[:0], j.recs[:0], j.results[:0]
	j.call = batchCall{}
	j.timeout, j.deadline, j.bound, j.noSpool = nil, nil, "", false
	jobPool.Put(j)
}

// produceBatch writes the checked records of j at acks (an acks index: 0,
// 1, 2 for -1), atomic (acks -1 only) as one Kafka transaction, and tells
// what became of each record. The outcome's results are j's: valid until
// the transport releases j. ctx ends the wait early (the records' own
// deadline is produce_timeout_ms, or j.deadline): records still
// unanswered then are answered 504.
//
// Per-key order: a key's records go to one partition (the partitioner of
// /commit: the key's hash, never a record's retry) through one client, in
// the order of the batch, and each client keeps a partition's records in
// the order it was given them, retries included:
//   - acks 0 and 1 (the leader client): not idempotent, so a retried
//     request could be overtaken by a later one of the same partition if
//     two were out at once; max_in_flight_requests (default 1) keeps one
//     produce request per broker out, and a retry leaves before anything
//     queued behind it. Above 1 the operator chose throughput over that
//     order (README).
//   - acks -1 and atomic batches (idempotent and transactional clients):
//     up to five requests per broker are out, each batch carrying
//     sequence numbers; the broker refuses a batch out of sequence and kgo
//     sends them again in order, so a retry never reorders nor duplicates.
//
// A record that fails is not retried by kproxy, so the records of a key
// that were written are in the batch's order, with perhaps a gap where one
// failed (its result says so). The same holds across batches handed to
// one client one after the other (startProduce), which is how a gRPC
// stream pipelines its requests.
func (s *Server) produceBatch(ctx context.Context, acks int, atomic bool, j *batchJob) batchOutcome {
	if atomic {
		return s.produceAtomic(ctx, j)
	}
	c, out := s.startProduce(acks, j)
	if c == nil {
		return out
	}
	return s.finishProduce(ctx, c)
}

// startProduce hands the checked records of j (not atomic) to their kgo
// client, in order, and returns the call to finish; or, with a nil call,
// the outcome when there is nothing to wait for: acks=0 records answered
// at once, or refused for the acks=0 records being delivered.
func (s *Server) startProduce(acks int, j *batchJob) (*batchCall, batchOutcome) {
	n := len(j.recs)
	if reason := s.late(j, "in kproxy"); reason != "" {
		return nil, j.every(503, -1, reason) // nothing tried, as admitBatch's 503
	}
	if acks == 0 {
		// acks=0 records outlive their request: they are bounded apart
		// (as /commit's), so that kgo's buffer never fills.
		if v := s.acks0Out.Add(int64(n)); v > int64(s.cfg.ReqPoolSize) {
			s.acks0Out.Add(int64(-n))
			// Refused whole, nothing tried (as admitBatch's 503): not in
			// kproxy_batch_results_total.
			reason := "overloaded: req_pool_size acks=0 records still being delivered; the batch was not written"
			return nil, j.every(503, -1, reason)
		}
	}
	cl, tr := s.prod.client(acks)
	if !tr.room.take(n) {
		if acks == 0 {
			s.acks0Out.Add(int64(-n))
		}
		// Refused whole, nothing tried (as admitBatch's 503); counted as
		// /commit counts its record refused so (Kafka's client full).
		s.metrics.produceErrors.WithLabelValues("503").Add(float64(n))
		return nil, j.every(503, -1, noRoom)
	}
	// Kafka's client gets produce_timeout_ms from the arrival, never a
	// gRPC call's shorter deadline (j.deadline, its look-ups' bound): when
	// a record's context ends before it is sent, the client fails every
	// record queued behind it in its partition, other requests' records
	// with time left, acks=0 ones answered 200 included. The call is
	// answered at its own deadline instead (ctx of finishProduce): 504 for
	// a record Kafka's client still holds, which may be written after.
	if acks == 0 && !s.prod.enterAcks0() {
		tr.room.give(n)
		s.acks0Out.Add(int64(-n))
		s.metrics.produceErrors.WithLabelValues("503").Add(float64(n)) // as /commit's
		return nil, j.every(503, -1, "kproxy is shutting down; the batch was not written")
	}
	c := s.startBatch(cl, tr, acks, j, s.arrivalDeadline(j), time.Now(), s.spool != nil && acks != 0)
	if acks == 0 {
		s.prod.leaveAcks0()
		// Answered now; the promises count each record as written or
		// lost (acks0Done), and give back its acks=0 share.
		s.metrics.batchResultN(200, n)
		out := j.every(200, -1, "") // partition -1, no offset: not known yet
		out.settled = c.settled
		return nil, out
	}
	return c, batchOutcome{}
}

// finishProduce waits for the records of c (until their deadline and a
// grace, or ctx) and sums up what became of them.
func (s *Server) finishProduce(ctx context.Context, c *batchCall) batchOutcome {
	c.await(ctx)
	c.cancelled = errors.Is(ctx.Err(), context.Canceled) && c.deadline.Err() == nil
	return s.outcome(c.collect(ctx), c.acks)
}

// every is an outcome giving each record of j status, with reason.
func (j *batchJob) every(status, index int, reason string) batchOutcome {
	j.results = j.results[:0]
	for range j.recs {
		j.results = append(j.results, recordResult{status: status, partition: -1, offset: -1, reason: reason})
	}
	return batchOutcome{results: j.results, status: status, index: index, reason: reason}
}

// batchCall is a batch on its way through one kgo client.
type batchCall struct {
	srv      *Server
	job      *batchJob
	acks     int
	cl       *kgo.Client
	tr       *tracer
	note     sendNote        // tr's counts before the first record was handed over
	deadline context.Context // the records' deadline
	spoolAt  context.Context // spool_after_ms from the start; nil: no record may be spooled
	left     atomic.Int64    // promises still to come
	done     chan struct{}   // closed by the last promise
	// cancelled: the call was cancelled (its client left) before the
	// records' deadline: what its 504s say (finishProduce).
	cancelled bool
	items     []batchItem
	// held counts the records kgo still holds (answered 504 included:
	// their promises are yet to come); the last closes settled. Until
	// then a record answered 504 may still be written: what must come
	// after it in Kafka (a stream's next request, through another client)
	// waits for settled. A record a flip took into the spool no longer
	// counts: its topic's later records go behind its copy in the spool,
	// and none waits for kgo's (README, Spool).
	held    atomic.Int64
	settled chan struct{}
	// spoolWait, when watchSpool set it, is closed once its wait for
	// spool_after_ms ended.
	spoolWait chan struct{}
	// keyed is the last record of each topic and key handed through its
	// gate (startBatch's goroutine only): from the first record that went
	// to the spool on; nil before.
	keyed map[string]*batchItem
}

// batchItem is one record of a batchCall; it is its record's Context, to
// be found in the promise (one function for all records).
type batchItem struct {
	itemUse
	// order is its Context field's Done and Err (sendOrder); nil: never
	// done. Outside itemUse, which a use of the item writes whole, and
	// atomic: kgo may call Done while a later use hands the item over (a
	// goroutine waiting on an unknown topic's first record).
	order atomic.Pointer[cutContext]
}

// itemUse is what a batchItem holds for one record.
type itemUse struct {
	rec   kgo.Record
	call  *batchCall
	state atomic.Int32 // waiting, finished (err, trace set) or abandoned (answered 504, or taken into the spool)
	gone  atomic.Bool  // counted off its call's held (letItem)
	err   error
	trace sendTrace
	// With the spool (as pending's): the gate, the generation, the spool
	// item (given to the spool at once, or taken by the gate's flip).
	gateRec
}

func (*batchItem) Deadline() (time.Time, bool) { return time.Time{}, false }
func (it *batchItem) Done() <-chan struct{}    { return it.order.Load().done() }
func (it *batchItem) Err() error               { return it.order.Load().err() }
func (*batchItem) Value(any) any               { return nil }

// startBatch hands j's records to cl, in order, each with the timestamp
// now: the records of a batch are created at once (and kgo would read the
// clock for each, 7% of kproxy's CPU on a batch of 100).
//
// gated passes each record through its topic's spool gate (spool.go): not
// for transactions, which are never spooled.
func (s *Server) startBatch(cl *kgo.Client, tr *tracer, acks int, j *batchJob, deadline context.Context, now time.Time, gated bool) *batchCall {
	j.compact()
	n := len(j.recs)
	if cap(j.items) < n {
		j.items = make([]batchItem, n)
	}
	j.call = batchCall{srv: s, job: j, acks: acks, cl: cl, tr: tr, deadline: deadline, done: make(chan struct{}),
		settled: make(chan struct{}), items: j.items[:n]}
	c := &j.call
	c.left.Store(int64(n))
	c.held.Store(int64(n))
	j.refs.Add(int64(n)) // one per record kgo holds, let go in its promise
	c.note = tr.note()
	if gated && !j.noSpool {
		c.spoolAt = s.spool.after.get()
	}
	// The order of the topic of the records handed over last, held while
	// the next are of that topic, up to heldRun records (sendOrder): a
	// /commit to the topic waits for no more.
	const heldRun = 128
	var held *topicOrder
	var heldTopic string
	var heldN int
	var gen *cutContext
	for i := range j.recs {
		r, it := &j.recs[i], &c.items[i]
		// One plain write of the whole item (state waiting, not gone): no
		// other goroutine has it until Produce (the job's references
		// ordered every earlier use before its reuse). Atomic stores here
		// showed as 6% of kproxy's CPU in a profile of gRPC batches of
		// 100, waiting on the item's cache line, last written by kgo's
		// goroutine on the other core.
		it.itemUse = itemUse{call: c, rec: kgo.Record{Topic: r.name, Value: r.value, Headers: r.headers, Timestamp: now, Context: it}}
		it.order.Store(nil)
		if len(r.key) > 0 {
			it.rec.Key = r.key
		}
		if gated {
			s.gateBatchRecord(cl, c, it)
			continue
		}
		if held == nil || it.rec.Topic != heldTopic || heldN == heldRun {
			held.unlock()
			held, gen = tr.order.take(it.rec.Topic, deadline)
			heldTopic, heldN = it.rec.Topic, 0
		}
		heldN++
		it.order.Store(gen)
		cl.Produce(deadline, &it.rec, onBatchProduced)
	}
	held.unlock()
	return c
}

// gateBatchRecord hands a batch record to kgo through its topic's gate, or
// to the spool when the topic spools (spool.go); a record of a spool=0
// batch is refused then (spoolOvertake), as /commit does.
func (s *Server) gateBatchRecord(cl *kgo.Client, c *batchCall, it *batchItem) {
	g := s.spool.lockGate(it.rec.Topic)
	if !s.spool.directLocked(g) {
		c.tr.room.give(1) // not for kgo
		if c.job.noSpool {
			g.mu.Unlock()
			it.err = errSpoolOvertake
		} else {
			it.item = newSpoolItem(g, &it.rec, false, it.rec.Timestamp) // not kgo's: the request's
			if prev := c.lastOfKey(it); prev != nil {
				// In the spool before it (queued, or taken by the flip):
				// refused, so is this one (refuseAfterRefused).
				it.item.after = prev.item // g.mu held: prev's gate
			}
			s.spool.holdLocked(g, it.item)
			g.mu.Unlock()
		}
		it.state.Store(finished)
		c.promised() // no promise from kgo will come
		c.let()
		c.job.release()
		return
	}
	c.lastOfKey(it)
	if c.spoolAt == nil {
		g.addLocked(&it.gateRec, &it.rec, nil)
		t, og := c.tr.order.take(it.rec.Topic, c.deadline)
		it.order.Store(og)
		cl.Produce(c.deadline, &it.rec, onBatchProduced)
		t.unlock()
	} else {
		g.addLocked(&it.gateRec, &it.rec, g.gen)
		cl.Produce(g.gen, &it.rec, onBatchProduced)
	}
	g.mu.Unlock()
}

// lastOfKey returns the record of it's topic and key before it in c, and
// notes it as the last one. Only once a record of c went to the spool
// (it.item set) are records noted: the earlier ones are then indexed at
// once. Keyless records keep no order: nil.
func (c *batchCall) lastOfKey(it *batchItem) *batchItem {
	if it.rec.Key == nil || c.keyed == nil && it.item == nil {
		return nil
	}
	if c.keyed == nil {
		c.keyed = map[string]*batchItem{}
		for i := range c.items {
			e := &c.items[i]
			if e == it {
				break
			}
			if e.rec.Key != nil {
				c.keyed[e.rec.Topic+"\x00"+string(e.rec.Key)] = e
			}
		}
	}
	k := it.rec.Topic + "\x00" + string(it.rec.Key)
	prev := c.keyed[k]
	c.keyed[k] = it
	return prev
}

// errSpoolOvertake is the failure of a spool=0 record of a spooling topic.
var errSpoolOvertake = errors.New("spool overtake")

// errNoRoom is a record refused for a full Kafka client (room).
var errNoRoom = errors.New("kafka client full")

// promised counts one record of c answered (by kgo, or taken into the
// spool by its gate's flip); the last closes done.
func (c *batchCall) promised() {
	if c.left.Add(-1) == 0 {
		close(c.done)
	}
}

// let counts one record of c that kgo no longer holds; the last closes
// settled. Called before the record's job.release: c is the job's.
func (c *batchCall) let() {
	if c.held.Add(-1) == 0 {
		close(c.settled)
	}
}

// letItem counts it off c's held once: at its promise, or when a flip
// took it into the spool, whichever comes first.
func (c *batchCall) letItem(it *batchItem) {
	if it.gone.CompareAndSwap(false, true) {
		c.let()
	}
}

// onBatchProduced is the promise of every batch record.
func onBatchProduced(r *kgo.Record, err error) {
	it := r.Context.(*batchItem)
	c := it.call
	s, j := c.srv, c.job
	if err != nil {
		s.refusedTopic(c.cl, r.Topic, err)
	} else if c.cl == s.prod.all { // the idempotent client; a transactional one is never purged (refusedTopic)
		s.purges.wrote(c.cl, r.Topic, s.check, s.produceTimeout)
	}
	var trace sendTrace // what a failure needs (produceStatus): three atomic loads a record spared
	if err != nil {
		trace = c.tr.since(c.note)
	}
	if c.acks == 0 {
		s.acks0Done(r, err, trace)
		c.let()
		j.release()
		return
	}
	it.err, it.trace = err, trace
	taken := false
	if it.gate != nil {
		taken = s.spool.settle(&it.gateRec) // taken by a flip: it.item is the answer
	}
	// Not waiting: answered 504 (collect), or taken and counted (await).
	if it.state.CompareAndSwap(waiting, finished) {
		c.promised()
	} else if err == nil && !taken && (c.cl == s.prod.all || c.cl == s.prod.leader) {
		// Given up (its deadline, or its client left) and written after
		// all: a record Kafka accepted. Not one of an atomic batch (its
		// own transactional client): its transaction is aborted, it was
		// never written.
		s.metrics.records[c.acks].Inc()
	}
	c.letItem(it)
	j.release()
}

// watchSpool runs c's wait for spool_after_ms (awaitSpool) from now on,
// beside the caller, rather than once await is called; await waits for it
// to end. A stream's answerer awaits its requests one after another: a
// request behind a slow one (spool = false, waiting for its deadline) was
// spooled only when its turn came, by then at its own deadline, and
// answered at random 503, 504 or 202.
func (c *batchCall) watchSpool(ctx context.Context) {
	if c.spoolAt == nil {
		return
	}
	c.spoolWait = make(chan struct{})
	go func() {
		defer close(c.spoolWait)
		c.awaitSpool(ctx)
	}()
}

// awaitSpool gives Kafka spool_after_ms to take the records; then the
// topics of those it has not answered spool. It returns at once when every
// promise came, or ctx or the records' deadline ended.
func (c *batchCall) awaitSpool(ctx context.Context) {
	select {
	case <-c.done:
	case <-ctx.Done():
	case <-c.deadline.Done():
		// Before spool_after_ms (records handed over late: a slow
		// body, look-ups that took their time): answered by their
		// deadline as the others, not spooled past it and answered
		// 202 late.
	case <-c.spoolAt.Done():
		// The records still in kgo are taken into the spool by
		// their gates' flips.
		c.spooled(c.srv.spool.flip)
	}
}

// await waits for every promise, or for the records' deadline and a grace
// for kgo to fail those it did not send (answerGrace), or for ctx.
func (c *batchCall) await(ctx context.Context) {
	switch {
	case c.spoolWait != nil:
		<-c.spoolWait
	case c.spoolAt != nil:
		c.awaitSpool(ctx)
	}
	select {
	case <-c.done:
		return
	case <-ctx.Done():
		return
	case <-c.deadline.Done():
	}
	timer := time.NewTimer(answerGrace)
	defer timer.Stop()
	select {
	case <-c.done:
	case <-ctx.Done():
	case <-timer.C:
		// Those another request's flip took into the spool meanwhile
		// are the spool's to answer (202), not given up (504).
		c.spooled(c.srv.spool.taken)
	}
}

// spooled counts as answered the records still in kgo that take (a flip,
// or a look at whether one took them) finds in the spool: their promises
// are left to release them.
func (c *batchCall) spooled(take func(*gateRec) *spoolItem) {
	for i := range c.items {
		it := &c.items[i]
		if it.gen != nil && it.state.Load() == waiting && take(&it.gateRec) != nil {
			c.letItem(it) // the spool orders what comes after it
			if it.state.CompareAndSwap(waiting, abandoned) {
				c.promised()
			}
		}
	}
}

// collect reads each record's outcome into the job's results; one whose
// promise has not come is given up to its promise and answered 504. A
// record held by the spool behind a record of its key that kgo has waits
// until the records' deadline or ctx (spooler.await).
func (c *batchCall) collect(ctx context.Context) []recordResult {
	j := c.job
	j.results = j.results[:0]
	for i := range c.items {
		it := &c.items[i]
		var r recordResult
		switch {
		// Loaded first: a finished record (nearly all) never turns back
		// to waiting, and a CAS that fails costs as much as one that
		// succeeds.
		case it.state.Load() == waiting && it.state.CompareAndSwap(waiting, abandoned):
			r = recordResult{status: 504, partition: -1, offset: -1,
				reason: j.bounded("no answer from kafka within produce_timeout_ms" + mayBeWritten)}
			if c.cancelled {
				r.reason = "the call was cancelled (its client left) before kafka answered" + mayBeWritten
			}
		case it.item != nil:
			c.srv.spool.await(it.item, c.deadline, ctx.Done())
			r = recordResult{status: 202, partition: -1, offset: -1}
			if it.item.err != nil {
				code, reason := it.item.refusal()
				r = recordResult{status: code, partition: -1, offset: -1, reason: j.bounded(reason)}
			}
		case it.err == errSpoolOvertake:
			r = recordResult{status: 503, partition: -1, offset: -1, reason: spoolOvertake}
		case it.err != nil:
			code, reason := produceStatus(it.err, it.trace)
			// The look-up of the topic's limit is bounded as the request's
			// were (a gRPC call's deadline: recordsDeadline).
			if code == 413 {
				batched, unread := c.srv.batchedTooLarge(c.srv.recordsDeadline(j), it.err, it.rec.Topic, recordSize(it.rec.Key, it.rec.Value, it.rec.Headers))
				if batched {
					// Not 413: the record fits (or may), and a client
					// does not send again what is too large.
					code, reason = c.srv.batchTooLargeStatus(c.cl, it.trace, unread)
				}
			}
			why, earlier := earlierReason(it.err, c.deadline, it.gate != nil)
			switch {
			case code == 503 && earlier:
				reason = why // another record's produce_timeout_ms
			case c.deadline == j.deadline:
				// Handed to Kafka's client under the call's deadline (an
				// atomic batch's transaction): its reason names it. The
				// others had produce_timeout_ms.
				reason = j.bounded(reason)
			}
			r = recordResult{status: code, partition: -1, offset: -1, reason: reason}
		default:
			r = recordResult{status: 200, partition: it.rec.Partition, offset: it.rec.Offset}
		}
		j.results = append(j.results, r)
	}
	return j.results
}

// bounded names j's own deadline, when a transport set one, where reason
// names produce_timeout_ms.
func (j *batchJob) bounded(reason string) string {
	if j.bound == "" {
		return reason
	}
	return strings.Replace(reason, "produce_timeout_ms", j.bound, 1)
}

// late is why j's records are not handed to Kafka's client, their
// deadline (produce_timeout_ms from their arrival: what the client gets)
// having passed while the request waited (what for: waited); "" when it
// has not (lateReason).
func (s *Server) late(j *batchJob, waited string) string {
	return lateReason(s.arrivalDeadline(j), waited)
}

// lateReason is why records whose deadline dl passed while their request
// waited (what for: waited) are not handed to Kafka's client; "" when it
// has not. Handed over so, the client would fail them at once, with every
// record queued behind them in their partition: other requests' records
// with time left, acks=0 ones answered 200.
func lateReason(dl context.Context, waited string) string {
	select {
	case <-dl.Done():
		return "produce_timeout_ms passed while the request waited " + waited +
			"; nothing was handed to kafka: not written"
	default:
		return ""
	}
}

// recordsDeadline is the deadline of j's records.
func (s *Server) recordsDeadline(j *batchJob) context.Context {
	if j.deadline != nil {
		return j.deadline
	}
	return s.arrivalDeadline(j)
}

// arrivalDeadline is produce_timeout_ms from j's arrival (j.timeout), or
// from now when the transport set none.
func (s *Server) arrivalDeadline(j *batchJob) context.Context {
	if j.timeout != nil {
		return j.timeout
	}
	return s.deadlines.get()
}

// outcome sums up a non-atomic batch's results and counts them: 200 when
// every record is in Kafka, 202 when every record is in Kafka or in the
// spool and one at least in the spool; with records not written, as
// without the spool (207 when spooled ones are beside them).
func (s *Server) outcome(res []recordResult, acks int) batchOutcome {
	out := batchOutcome{results: res, status: 200, index: -1}
	written, failed, spooled, alike, worst := 0, 0, 0, true, 0
	for i, r := range res {
		worst = max(worst, r.status)
		switch r.status {
		case 200:
			written++
			continue
		case 202:
			spooled++
			continue
		}
		s.metrics.batchResultN(r.status, 1)
		s.metrics.produceErrors.WithLabelValues(strconv.Itoa(r.status)).Inc()
		if failed == 0 {
			out.index, out.status = i, r.status
		} else if r.status != out.status {
			alike = false
		}
		failed++
	}
	// Counted once for the batch: a counter's Add is an atomic loop.
	if written > 0 {
		s.metrics.batchResultN(200, written)
		s.metrics.records[acks].Add(float64(written))
	}
	if spooled > 0 {
		s.metrics.batchResultN(202, spooled)
	}
	switch {
	case failed == 0 && spooled > 0:
		out.status = 202
		out.reason = strconv.Itoa(spooled) + " of " + strconv.Itoa(len(res)) +
			" records not taken by kafka within spool_after_ms are in the spool (see each result)"
	case failed == 0:
	case failed == len(res) && alike && out.status == 504:
		out.reason = "no record acknowledged: " + res[out.index].reason
	case failed == len(res) && alike:
		out.reason = "no record written: " + res[out.index].reason
	default:
		out.status = 207
		out.reason = strconv.Itoa(failed) + " of " + strconv.Itoa(len(res)) + " records not written (see each result)"
	}
	if worst >= 500 {
		s.errLog.warn("kafka write of a batch failed", "records", len(res), "failed", failed,
			"first_code", res[out.index].status, "reason", res[out.index].reason)
	}
	return out
}
