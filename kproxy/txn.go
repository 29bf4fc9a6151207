package kproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnPool holds the transactional clients atomic batches run on
// (transactional_producers of them). A kgo client runs one transaction at
// a time — begin, produce, commit or abort — so a batch takes a free
// client for its whole transaction, waiting for one at most until its
// records' deadline or its request's end (then 503, nothing written).
// Each client has its own transactional id, <transactional_id>-<i>, kept
// for the life of the process: a client replaced after a failure starts
// with the same id, which fences the old one (its epoch is bumped and any
// transaction it left open is aborted at once).
type txnPool struct {
	free       chan *txnProducer
	all        []*txnProducer
	opts       []kgo.Opt
	fencer     *kgo.Client   // sends the InitProducerID that fences a retired client's id
	timeout    time.Duration // produce_timeout_ms: bounds a commit, an abort, a fence
	txnTimeout time.Duration
	log        *slog.Logger

	// newMu serializes kgo.NewClient: the clients share opts, and kgo
	// writes into the compression option's slice while it reads it.
	newMu sync.Mutex

	mu     sync.Mutex
	closed bool
	aborts sync.WaitGroup // aborts running after their batch was answered
	// retiring counts the fences of retire under way (p.mu), whenever
	// they start, and retiringDone is closed when the count
	// falls to 0: close waits for them, with the aborts still running (an
	// abort that fails retires its client), at most fenceAtShutdown,
	// before the fencer closes under them.
	retiring     int
	retiringDone chan struct{}

	// retired is told of a client retire closed (set before first use).
	retired func(*kgo.Client)
}

type txnProducer struct {
	id string
	// fencedLogged: fencedBy logged the current client's fence (its
	// batch's failure, then its abort's, say it twice). Its holder's.
	fencedLogged bool
	// cl is nil until its next use. Its holder (a batch, or close) reads
	// it; it is set and cleared under the pool's mu, so that close can
	// read it while a batch still holds tp.
	cl *kgo.Client
	tr *tracer
	// shut: close closed cl while a batch held tp (shutdown_timeout_ms
	// passed). Under the pool's mu, as commit reads it: a commit is sent
	// only when close has not shut cl first.
	shut bool
	// fenced: the id was fenced since the process started or since
	// its last client was retired (fence), so that no transaction an
	// earlier holder of the id left open (a kproxy killed in the middle
	// of one) is committed by this client's first. Read and set by tp's
	// holder.
	fenced bool
	// unfenced: a client of the id was retired and its fence failed; a
	// transaction it left open stays open at the brokers until the id's
	// next use or the transaction timeout, or close fences it. Read and
	// set by tp's holder.
	unfenced bool
	// stale (nil: not), why cl is retired when its batch is aborted:
	// errRewound (givenUpAfterSending), or Kafka refused a record of cl
	// with UNKNOWN_TOPIC_ID (its topic
	// deleted, perhaps re-created; or a broker's metadata lags), or with
	// MESSAGE_TOO_LARGE (the topic's max.message.bytes lowered). kgo keeps
	// the topic id it fetched first, and the batch size limit it read when
	// it learnt the topic's partitions, until the topic is purged from the
	// client; but a purge of a transactional client drops the topic's
	// partitions from the transaction kgo would commit: one that lands
	// between a later batch's acknowledgements and its commit makes the
	// commit send an abort, or nothing, and return nil. cl is retired
	// instead (its next client fetches the ids, and reads the limit,
	// afresh). Set by the refused record's promise (markStale).
	stale atomic.Pointer[error]
}

// newTxnPool makes the pool; its clients are made when first used.
func newTxnPool(cfg Config, prefix string, ps *producers, log *slog.Logger) *txnPool {
	timeout := time.Duration(cfg.ProduceTimeoutMs) * time.Millisecond
	p := &txnPool{
		free:    make(chan *txnProducer, cfg.TransactionalProducers),
		fencer:  ps.leader,
		timeout: timeout,
		// A transaction lasts at most produce_timeout_ms (its records
		// and its commit, plus answerGrace); the rest is a margin. A kproxy
		// killed in the middle of one leaves it open at the brokers,
		// holding back read_committed consumers of its partitions, until
		// this timeout aborts it (or the id is used again).
		txnTimeout: time.Duration(txnTimeoutMs(cfg.ProduceTimeoutMs)) * time.Millisecond,
		log:        log,
	}
	for i := range cfg.TransactionalProducers {
		tp := &txnProducer{id: prefix + "-" + strconv.Itoa(i), tr: &tracer{idempotent: true}}
		p.all = append(p.all, tp)
		p.free <- tp
	}
	p.opts = append(ps.common[:len(ps.common):len(ps.common)],
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.TransactionTimeout(p.txnTimeout),
		// kgo refuses AllowIdempotentProduceCancellation here: a record
		// is not failed by its deadline, and one still queued then may
		// leave before the abort fails it (AbortBufferedRecords). Its
		// transaction is aborted all the same: it is never committed.
	)
	p.opts = append(p.opts, kgo.WithHooks(ps.batch))
	return p
}

// get takes a free client, waiting until deadline (the records') or call
// (the request's) ends: nil then.
func (p *txnPool) get(deadline, call context.Context) *txnProducer {
	select {
	case tp := <-p.free:
		return tp
	case <-deadline.Done():
	case <-call.Done():
	}
	return nil
}

func (p *txnPool) put(tp *txnProducer) { p.free <- tp }

// markStale marks the pool's client cl stale (txnProducer.stale), why
// being errStaleTopicID or errStaleLimit; a client retired already
// (closed) is no longer the pool's: nothing.
func (p *txnPool) markStale(cl *kgo.Client, why *error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tp := range p.all {
		if tp.cl == cl {
			tp.stale.Store(why)
			return
		}
	}
}

// Why a client marked stale is retired.
var (
	errStaleTopicID = errors.New("kafka refused a record with UNKNOWN_TOPIC_ID: the client holds a topic id the brokers no longer know")
	errStaleLimit   = errors.New("kafka refused a batch with MESSAGE_TOO_LARGE: the client builds the topic's batches to a max.message.bytes the brokers lowered since")
	errRewound      = errors.New("kafka's client gave up records of the transaction after sending them: the next batch of their partition would carry the sequence numbers of a batch the brokers may hold")
)

// begin starts a transaction on tp, making its client if needed; a client
// that cannot begin one (its producer id failed for good) is replaced once.
// The producer id is loaded first within deadline (the records'): kgo's
// BeginTransaction loads it without one, and retries CONCURRENT_TRANSACTIONS
// for as long as the coordinator answers so.
func (p *txnPool) begin(tp *txnProducer, deadline context.Context) error {
	if why := tp.stale.Load(); tp.cl != nil && why != nil { // refused after its batch's abort began
		p.retire(deadline, tp, *why)
	}
	for attempt := 0; ; attempt++ {
		if tp.cl == nil && !tp.fenced {
			if err := fence(deadline, p.fencer, tp.id, p.txnTimeout); err != nil {
				return fmt.Errorf("transactional client %s: %w", tp.id, err)
			}
			tp.fenced, tp.unfenced = true, false
		}
		if tp.cl == nil {
			p.newMu.Lock()
			cl, err := kgo.NewClient(append(p.opts[:len(p.opts):len(p.opts)], kgo.TransactionalID(tp.id), kgo.WithHooks(tp.tr))...)
			p.newMu.Unlock()
			if err != nil {
				return fmt.Errorf("transactional client %s: %w", tp.id, err)
			}
			p.mu.Lock()
			if p.closed { // close has looked at tp already
				p.mu.Unlock()
				cl.Close()
				return fmt.Errorf("transactional client %s: %w", tp.id, kgo.ErrClientClosed)
			}
			tp.cl, tp.fencedLogged = cl, false
			p.mu.Unlock()
		}
		if err := loadProducerID(tp.cl, deadline); err != nil {
			return fmt.Errorf("transactional client %s: %w", tp.id, err)
		}
		err := tp.cl.BeginTransaction()
		if err == nil || attempt == 1 {
			return err
		}
		// The fence stops with deadline (a cancelled call, the records'
		// deadline): nothing of the batch was sent, and the next client's
		// InitProducerID fences the id as well.
		p.retire(deadline, tp, err)
	}
}

// loadProducerID loads cl's producer id within deadline. A load kgo gave
// up on after its request retries (a coordinator loading its log, a
// broker away) leaves the id to be loaded again, and BeginTransaction
// would load it without a deadline, retrying CONCURRENT_TRANSACTIONS for
// as long as the coordinator answers so: it is loaded again here, until
// deadline. A failure the client keeps (a definite refusal: denied,
// fenced; closed) is left to BeginTransaction, which reports it.
func loadProducerID(cl *kgo.Client, deadline context.Context) error {
	for {
		_, _, err := cl.ProducerID(deadline)
		var ke *kerr.Error
		switch {
		case err == nil:
			return nil
		case deadline.Err() != nil:
			return fmt.Errorf("producer id not loaded in time: %w", err)
		case errors.As(err, &ke) && !ke.Retriable && !errors.Is(err, kerr.ConcurrentTransactions),
			errors.Is(err, kgo.ErrClientClosed):
			return nil
		}
		select {
		case <-deadline.Done():
			return fmt.Errorf("producer id not loaded in time: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// errShutBeforeCommit: close shut the client at the end of
// shutdown_timeout_ms before its batch's commit was issued.
var errShutBeforeCommit = errors.New("transactional client closed at shutdown before the commit")

// errCommitNotSent: the commit was not sent, for the reason wrapped with
// it; the transaction is aborted.
var errCommitNotSent = errors.New("commit not sent")

// commit commits tp's transaction, in which items' records were
// acknowledged, by the records' deadline (produce_timeout_ms from the
// request's arrival, or a gRPC call's own): the client is answered by
// then, and Kafka's client sends the commit again after a retriable
// answer only until then (one sent before may be applied after it: 504
// "may have been written"). Unless close shut tp's client
// first (errShutBeforeCommit: nothing was sent, and close fenced the id).
// Once the commit is issued, close shutting the client fails it with the
// commit perhaps on the wire.
//
// A record acknowledged under another producer id or epoch than the one
// the commit would carry is not in the transaction it would commit: kgo
// reloads a producer id that a broker's answer failed (InitProducerID at
// its epoch, e.g. after UNKNOWN_PRODUCER_ID on a log truncated past its
// last record), and the coordinator then aborts the transaction so far —
// records retried after it start another. Such a batch is not committed
// (errCommitNotSent).
func (p *txnPool) commit(tp *txnProducer, items []batchItem, by time.Time) error {
	p.mu.Lock()
	shut := tp.shut
	p.mu.Unlock()
	if shut {
		return errShutBeforeCommit
	}
	// Not the request's context: a cancelled gRPC call does not stop a
	// commit, whose outcome it could no longer tell.
	ctx, cancel := context.WithDeadline(context.Background(), by)
	defer cancel()
	id, epoch, err := tp.cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("%w: producer id: %w", errCommitNotSent, err)
	}
	for i := range items {
		if r := &items[i].rec; r.ProducerID != id || r.ProducerEpoch != epoch {
			return fmt.Errorf("%w: record %d was written by producer id %d epoch %d, the transaction to commit is %d epoch %d "+
				"(kafka aborted the part of the batch written before)", errCommitNotSent, i, r.ProducerID, r.ProducerEpoch, id, epoch)
		}
	}
	sent := tp.tr.endTxns.Load()
	err = tp.cl.EndTransaction(ctx, kgo.TryCommit)
	if err != nil && tp.tr.endTxns.Load()-sent > 1 {
		return fmt.Errorf("%w: %w", errCommitResent, err)
	}
	return err
}

// errCommitResent: kgo wrote the commit more than once (an answer lost
// with its connection, a retriable error) and then failed it. The first
// may have been applied whatever the last answer said: a producer that
// fenced the id after it (PRODUCER_FENCED to the resend), a coordinator
// that moved (NOT_COORDINATOR, then an answer from one that does not
// know the transaction).
var errCommitResent = errors.New("the commit was sent again")

// abort ends tp's transaction as aborted, after the batch was answered,
// and then frees tp: records not yet answered by Kafka are failed and
// awaited (AbortBufferedRecords: a late one must not join the next
// transaction), then the transaction is aborted (EndTransaction TryAbort,
// also what kgo asks after a failed commit; then a producer id it left
// failed is reloaded, which aborts at the brokers). When any fails within
// produce_timeout_ms, or a record of the client was refused for a topic
// id it holds or a batch limit it read (stale, known once every record
// was awaited), the client is replaced and its id fenced, which aborts
// the transaction too.
func (p *txnPool) abort(tp *txnProducer) {
	run := func() {
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		defer cancel()
		err := tp.cl.AbortBufferedRecords(ctx)
		if why := tp.stale.Load(); err == nil && why != nil {
			// Aborted first (the coordinator knows the partitions by
			// name): read_committed consumers are not held back until
			// the transaction timeout when the retire's fence fails.
			_ = tp.cl.EndTransaction(ctx, kgo.TryAbort)
			p.retire(context.Background(), tp, *why)
			p.put(tp)
			return
		}
		if err == nil {
			err = tp.cl.EndTransaction(ctx, kgo.TryAbort)
		}
		if err == nil {
			// When a record's error failed the producer id (e.g.
			// UNKNOWN_PRODUCER_ID), kgo's TryAbort only marks the id
			// for reloading and sends nothing: the transaction would
			// stay open at the brokers, holding back read_committed
			// consumers, until the client's next use or the
			// transaction timeout. Reloading it now (InitProducerID
			// at the old epoch) makes the coordinator abort it.
			_, _, err = tp.cl.ProducerID(ctx)
		}
		if err != nil {
			p.retire(context.Background(), tp, fmt.Errorf("abort transaction: %w", err))
		}
		p.put(tp)
	}
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.aborts.Add(1) // before close waits for the aborts
	}
	p.mu.Unlock()
	if closed {
		run()
		return
	}
	go func() {
		defer p.aborts.Done()
		run()
	}()
}

// retire closes tp's client (its records fail with ErrClientClosed) and
// fences its transactional id: the brokers bump the id's epoch and abort
// what the old client left open, so that nothing it sent late can be
// committed, and read_committed consumers are not held back until the
// transaction timeout. The next use makes a new client. The fence takes
// produce_timeout_ms at most, less when ctx ends first.
func (p *txnPool) retire(ctx context.Context, tp *txnProducer, why error) {
	p.mu.Lock()
	cl := tp.cl
	tp.cl = nil
	tp.stale.Store(nil)
	shut := tp.shut
	if !shut {
		p.retiring++
		defer p.doneRetiring()
	}
	p.mu.Unlock()
	if shut { // close closed cl and fenced the id already
		return
	}
	if cl != nil {
		cl.Close()
		if p.retired != nil {
			p.retired(cl)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	err := fence(ctx, p.fencer, tp.id, p.txnTimeout)
	tp.fenced, tp.unfenced = err == nil, err != nil
	p.log.Warn("transactional client replaced", "transactional_id", tp.id, "err", why, "fence_err", err)
	p.fencedBy(tp, why)
}

// fencedBy logs at Error when err says tp's client was fenced. This
// process fences an id only after it has closed the id's client: a client
// of its own fenced means another producer took the id, and each fences
// the other's transactions at its next atomic batch (its client replaced,
// or its producer id reloaded, which fences the other in turn).
func (p *txnPool) fencedBy(tp *txnProducer, err error) {
	if !tp.fencedLogged && (errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch)) {
		tp.fencedLogged = true
		p.log.Error("transactional client fenced by another producer of its transactional id: give each kproxy its own transactional_id (atomic batches of both fail while they share it)",
			"transactional_id", tp.id, "err", err)
	}
}

// doneRetiring counts a retire's fence off.
func (p *txnPool) doneRetiring() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.retiring--; p.retiring == 0 && p.retiringDone != nil {
		close(p.retiringDone)
		p.retiringDone = nil
	}
}

// awaitRetired waits until the aborts ended (aborted closed) and no
// retire fences, at most until limit: the ids being fenced (their
// clients replaced as the shutdown began, or by an abort that failed
// after it) are fenced through p.fencer, which closes after close.
func (p *txnPool) awaitRetired(aborted <-chan struct{}, limit <-chan time.Time) bool {
	select {
	case <-aborted:
	case <-limit:
		return false
	}
	for {
		p.mu.Lock()
		if p.retiring == 0 {
			p.mu.Unlock()
			return true
		}
		if p.retiringDone == nil {
			p.retiringDone = make(chan struct{})
		}
		ch := p.retiringDone
		p.mu.Unlock()
		select {
		case <-ch:
		case <-limit:
			return false
		}
	}
}

// fence initializes transactional id as a new producer would (Kafka's
// zombie fencing), then once more naming the producer id and epoch the
// brokers gave (KIP-360's form). Kafka aborts the transaction the id left
// open at the first; the kfake brokers of the tests and the dev stack only
// bump the epoch then, and abort it at the second, which Kafka takes as
// well (it bumps the epoch once more). Without it a transaction left open
// there was committed by the id's next client, with the records of a batch
// answered "not written".
func fence(ctx context.Context, cl *kgo.Client, id string, txnTimeout time.Duration) error {
	pid, epoch, err := initProducerID(ctx, cl, id, -1, -1, txnTimeout)
	if err == nil {
		_, _, err = initProducerID(ctx, cl, id, pid, epoch, txnTimeout)
	}
	if err != nil {
		return fmt.Errorf("fence transactional id %s: %w", id, err)
	}
	return nil
}

// initProducerID sends one InitProducerID for transactional id, retrying
// while the coordinator is busy aborting, until ctx ends.
func initProducerID(ctx context.Context, cl *kgo.Client, id string, pid int64, epoch int16, txnTimeout time.Duration) (int64, int16, error) {
	for {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID = &id
		req.TransactionTimeoutMillis = int32(txnTimeout.Milliseconds())
		req.ProducerID, req.ProducerEpoch = pid, epoch
		resp, err := req.RequestWith(ctx, cl)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		if err == nil {
			return resp.ProducerID, resp.ProducerEpoch, nil
		}
		if !kerr.IsRetriable(err) && !errors.Is(err, kerr.ConcurrentTransactions) {
			return 0, 0, err
		}
		select {
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// close waits for the aborts under way and for the clients in use, within
// ctx, and closes every client. One still in a transaction when ctx ends
// (shutdown_timeout_ms passed with its batch or its abort in progress) is
// closed all the same — what it has not sent fails, and its batch is
// answered 503, or 504 when its commit was issued first (commit) — and
// its transactional id fenced, so that the brokers abort the transaction
// at once rather than after the transaction timeout (a commit they took
// first stays). So is the id of an idle client retired with its fence
// failed (unfenced).
func (p *txnPool) close(ctx context.Context) {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.aborts.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	idle := make(map[*txnProducer]bool, len(p.all))
	for len(idle) < len(p.all) {
		var tp *txnProducer
		select {
		case tp = <-p.free: // a free one is taken even when ctx has ended
		default:
			select {
			case tp = <-p.free:
			case <-ctx.Done():
			}
		}
		if tp == nil {
			break
		}
		idle[tp] = true
		p.mu.Lock()
		cl := tp.cl
		tp.cl = nil
		p.mu.Unlock()
		if cl != nil {
			cl.Close()
		}
	}
	var fencing sync.WaitGroup
	for _, tp := range p.all {
		if idle[tp] && tp.unfenced {
			// Retired with its fence failed: what its client left open
			// would stay open until the transaction timeout.
			fencing.Go(func() { p.shutdownFence(tp) })
		}
		if idle[tp] {
			continue
		}
		p.mu.Lock()
		cl := tp.cl // nil: none yet, or being retired (which closes it)
		tp.shut = cl != nil
		p.mu.Unlock()
		if cl == nil {
			continue
		}
		p.log.Warn("transactional client still busy at shutdown; closed, its transaction aborted", "transactional_id", tp.id)
		cl.Close()
		fencing.Go(func() { p.shutdownFence(tp) })
	}
	fencing.Wait()
	limit := time.NewTimer(fenceAtShutdown)
	defer limit.Stop()
	if !p.awaitRetired(done, limit.C) {
		p.log.Warn("a transactional id still being fenced, or a transaction aborted, at shutdown; its transaction stays open until the transaction timeout")
	}
}

// shutdownFence fences tp's id, within fenceAtShutdown.
func (p *txnPool) shutdownFence(tp *txnProducer) {
	ctx, cancel := context.WithTimeout(context.Background(), fenceAtShutdown)
	defer cancel()
	if err := fence(ctx, p.fencer, tp.id, p.txnTimeout); err != nil {
		p.log.Warn("transactional id not fenced at shutdown; its transaction stays open until the transaction timeout",
			"transactional_id", tp.id, "err", err)
	}
}

// fenceAtShutdown bounds the fencing of the transactional ids of the
// clients still busy at the end of shutdown_timeout_ms, and the wait for
// the fences of clients being replaced.
const fenceAtShutdown = 2 * time.Second

// produceAtomic writes recs as one transaction on a client of the pool:
// 200 when it committed; otherwise it is aborted and every record gets
// the batch's status — never 207. A batch whose commit was never sent can
// never be committed, so it is "not written" (503, or a record's definite
// refusal: 400, 403, 404, 413, 502) whatever its records' own answers
// were; only a commit without a definite answer is 504.
func (s *Server) produceAtomic(ctx context.Context, j *batchJob) batchOutcome {
	j.compact()
	n := len(j.recs)
	if reason := s.late(j, "in kproxy"); reason != "" {
		return j.every(503, -1, reason) // nothing tried, as admitBatch's 503
	}
	if i := s.spoolingRecord(j); i >= 0 {
		return s.atomicFailed(n, 503, i, spoolingRefusal(j, i), j, false)
	}
	deadline := s.recordsDeadline(j)
	// A gRPC call cancelled by its client stops waiting: its handler must
	// return, since grpc-go frees the call's stream (one of
	// grpc_max_concurrent_streams) only then.
	tp := s.txns.get(deadline, ctx)
	if tp != nil && ctx.Err() != nil {
		s.txns.put(tp) // free as the call ended: nothing sent yet
		tp = nil
	}
	if tp == nil && ctx.Err() != nil {
		return s.atomicFailed(n, 503, -1, "the request ended ("+ctx.Err().Error()+
			") before a transactional producer was free; the batch was not written", j, false)
	}
	if tp == nil {
		return s.atomicFailed(n, 503, -1, "all "+strconv.Itoa(len(s.txns.all))+
			j.bounded(" transactional producers stayed busy for produce_timeout_ms; the batch was not written"), j, false)
	}
	// Beginning sends nothing of the batch: a cancelled call stops it too.
	begin, stop := context.WithCancel(deadline)
	unhook := context.AfterFunc(ctx, stop)
	err := s.txns.begin(tp, begin)
	unhook()
	stop()
	if err != nil {
		s.txns.put(tp)
		code, reason := 503, "kafka transaction not begun: "+err.Error()+"; the batch was not written"
		switch {
		case errors.Is(err, kerr.TransactionalIDAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed):
			code = 403 // kproxy's principal may not use its transactional id: a retry fares no better
		case errors.Is(err, kerr.InvalidTransactionTimeout):
			// Every batch is refused alike until kproxy's configuration
			// or the brokers' changes: not a 503, which clients retry.
			code, reason = 500, "kafka transaction not begun: the brokers refuse kproxy's transaction timeout of "+
				strconv.FormatInt(s.txns.txnTimeout.Milliseconds(), 10)+" ms (2 × produce_timeout_ms + 5 s) as above their "+
				"transaction.max.timeout.ms: lower produce_timeout_ms or raise transaction.max.timeout.ms; the batch was not written"
		}
		return s.atomicFailed(n, code, -1, reason, j, false)
	}
	// Checked again: a topic may have begun to spool while the batch
	// waited for its producer. Nothing was sent in the transaction: its
	// abort sends nothing either, and gives the producer back.
	if i := s.spoolingRecord(j); i >= 0 {
		s.txns.abort(tp)
		return s.atomicFailed(n, 503, i, spoolingRefusal(j, i), j, false)
	}
	c := s.startBatch(tp.cl, tp.tr, 2, j, deadline, time.Now(), false) // never spooled
	c.await(ctx)
	c.cancelled = errors.Is(ctx.Err(), context.Canceled) && c.deadline.Err() == nil // as finishProduce
	res := c.collect(ctx)
	first := -1
	for i, r := range res {
		if r.status != 200 {
			first = i
			break
		}
	}
	if first >= 0 {
		if it := &c.items[first]; it.state.Load() == finished {
			// Its error read once the promise set it: one given up (504)
			// is written by a promise that can come at any moment.
			s.txns.fencedBy(tp, it.err)
		}
		if givenUpAfterSending(c.items) {
			tp.stale.CompareAndSwap(nil, &errRewound)
		}
		s.txns.abort(tp)
		code := res[first].status
		if code == 504 {
			code = 503 // its transaction is never committed
		}
		why := strings.TrimSuffix(strings.TrimSuffix(res[first].reason, mayBeWritten), notWritten)
		out := s.atomicFailed(n, code, first, why+"; the transaction was aborted, no record of the batch was written", j, true)
		out.inLog = true // records sent in the transaction: appended, then aborted
		return out
	}
	by, ok := deadline.Deadline()
	if !ok {
		by = time.Now().Add(s.txns.timeout)
	}
	if err := s.txns.commit(tp, c.items, by); err != nil {
		s.txns.abort(tp) // what kgo asks after a failed commit; heals the client or replaces it
		code, reason := commitStatus(err)
		out := s.atomicFailed(n, code, -1, reason, j, false)
		out.inLog = true
		return out
	}
	s.txns.put(tp)
	s.metrics.transactions.WithLabelValues("committed").Inc()
	s.metrics.records[2].Add(float64(n))
	s.metrics.batchResultN(200, n)
	return batchOutcome{results: res, status: 200, index: -1}
}

// givenUpAfterSending tells whether kgo gave up, or is yet to give up
// (still holding it at the abort), a record of items after a produce
// request of the transaction was written, unless that request was the
// only one and the broker refused its batch outright (as invalid or too
// large: nothing of it appended). kgo then numbers the
// partition's next batch as the given-up one, whose batch the broker may
// hold: a leader that appended it and lost the leadership answers
// NOT_LEADER_OR_FOLLOWER, and the new leader has it. Before KIP-890
// (Kafka 4.0) an abort leaves the producer epoch as it was, and the broker
// takes the next batch of as many records for a retry of the held one:
// answered with its offset, not written, and the next commit makes nothing
// of it visible (TestAtomicBatchAfterGivenUpAppendVisible). The client is
// retired at the abort instead: the next one's id is fenced, a new epoch
// whose sequence numbers start at 0.
func givenUpAfterSending(items []batchItem) bool {
	for i := range items {
		it := &items[i]
		if it.state.Load() != finished {
			return true
		}
		if it.err == nil || !it.trace.wrote {
			continue
		}
		ke := (*kerr.Error)(nil)
		_, _, tooLarge := refusedTooLarge(it.err)
		if !it.trace.rewrote && (tooLarge || errors.As(it.err, &ke) && refusesRecords(ke)) {
			continue
		}
		return true
	}
	return false
}

// spoolingRefusal is why an atomic batch whose record i spools is refused.
func spoolingRefusal(j *batchJob, i int) string {
	return "topic " + j.recs[i].name + " has records in the spool; an atomic batch would overtake them; the batch was not written"
}

// spoolingRecord is the index of j's first record whose topic has records
// in the spool or is switching to it (-1: none). A transaction is written
// by a client of its own, straight to Kafka: it would overtake them.
func (s *Server) spoolingRecord(j *batchJob) int {
	if s.spool == nil {
		return -1
	}
	for i := range j.recs {
		name := j.recs[i].name
		if i > 0 && name == j.recs[i-1].name {
			continue
		}
		g := s.spool.lockGate(name)
		direct := s.spool.directLocked(g)
		g.mu.Unlock()
		if !direct {
			return i
		}
	}
	return -1
}

// commitStatus is the answer to a transaction whose commit failed.
func commitStatus(err error) (int, string) {
	var ke *kerr.Error
	switch {
	case errors.Is(err, errCommitResent):
		return 504, "kafka's answer to the transaction's commit was lost and the commit sent again failed (" + err.Error() +
			"); the first may have been applied: the batch may have been written, all of its records or none"
	case errors.Is(err, errShutBeforeCommit):
		return 503, "kproxy is shutting down: the transaction was not committed and is aborted; no record of the batch was written"
	case errors.Is(err, errCommitNotSent):
		return 503, "kafka transaction not committed (" + err.Error() + "); it was aborted, no record of the batch was written"
	case errors.Is(err, kerr.OperationNotAttempted):
		// kgo did not send the commit: the producer id had failed.
		return 503, "kafka transaction not committed (" + err.Error() + "); it was aborted, no record of the batch was written"
	case errors.As(err, &ke) && !ke.Retriable && ke.Code != kerr.UnknownServerError.Code && ke.Code != kerr.ConcurrentTransactions.Code:
		// A definite refusal by the coordinator (fenced, timed out and
		// aborted by it, …). Not CONCURRENT_TRANSACTIONS, which kgo
		// gives up with at the deadline: Kafka answers so to a commit
		// sent again (its first answer lost) while the first one's
		// markers are written, and the transaction then completes.
		return 503, "kafka refused to commit the transaction: " + ke.Message + "; no record of the batch was written"
	}
	// Sent, and no definite answer (a broken connection, a retriable
	// error until produce_timeout_ms, UNKNOWN_SERVER_ERROR): committed or
	// not, whole.
	return 504, "no definite answer from kafka to the transaction's commit (" + err.Error() +
		"); the batch may have been written, all of its records or none"
}

// atomicFailed is the outcome of an atomic batch not committed (or not
// known to be): every record carries code. With own, j's results hold the
// records' own outcomes, whose reasons are kept for the records that
// failed.
func (s *Server) atomicFailed(n, code, index int, reason string, j *batchJob, own bool) batchOutcome {
	outcome := "aborted"
	if code == 504 {
		outcome = "unknown"
	}
	s.metrics.transactions.WithLabelValues(outcome).Inc()
	s.metrics.batchResultN(code, n)
	s.metrics.produceErrors.WithLabelValues(strconv.Itoa(code)).Add(float64(n))
	if code >= 500 {
		s.errLog.warn("kafka transaction failed", "records", n, "code", code, "reason", reason)
	}
	if !own {
		return j.every(code, index, reason)
	}
	for i := range j.results {
		r := &j.results[i]
		if r.status != 200 {
			r.reason = strings.TrimSuffix(strings.TrimSuffix(r.reason, mayBeWritten), notWritten) + "; the transaction was aborted"
		} else {
			r.reason = reason
		}
		r.status, r.partition, r.offset = code, -1, -1
	}
	return batchOutcome{results: j.results, status: code, index: index, reason: reason}
}
