package ktransfer

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// reader is a module's Kafka consumer: one kgo client reading the
// partitions this process holds, directly (no consumer group: two modules
// on one topic each read all of it), and one goroutine polling it and
// dispatching the records to their partitions.
//
// The partitions' claims and releases reach the client through the poll
// goroutine only (assign, unassign): it applies them between two polls, so
// every record it holds when a change is applied has already been routed
// or dropped. Together with what kgo does on RemoveConsumePartitions, this
// makes a release followed by a new claim of the same partition safe:
//
//   - RemoveConsumePartitions (kgo v1.21.7, consumer.go) runs
//     assignPartitions with assignInvalidateMatching, which starts with
//     stopSession: it cancels the consumer session, waits until every
//     fetch, offset list and epoch load of that session has returned, and
//     discards every buffered fetch (discardBuffered, for all partitions).
//     The removed partitions' cursors are unset. Nothing fetched under the
//     old assignment can be polled afterwards.
//   - discardBuffered finishes the cursors without moving them
//     (usedOffsets.finishUsingAll): a kept partition's cursor only moves
//     when its records are taken by a poll, so the kept partitions fetch the
//     discarded records again from where they were: none is lost or skipped.
//   - AddConsumePartitions at the committed offset then starts a new
//     cursor there.
//
// So a record read before a re-claim is either dispatched before the
// release (and counted by it) or dropped; it is never dispatched under the
// new claim, and the new claim's records come in offset order from the
// committed offset.
//
// The window: the goroutine polls at most as many records as the window
// has free slots (PollRecords), so dispatching never waits for a slot and
// the loop is always back to apply a release quickly. When the window is
// full the topic's fetching is paused (PauseFetchTopics: kgo stops asking
// the brokers for it) and resumed once a commit frees slots.
type reader struct {
	m     *module
	cl    *kgo.Client
	topic string

	mu         sync.Mutex
	pending    []change
	cancelPoll context.CancelFunc // the poll in progress, nil when none
	exited     bool               // the poll goroutine returned: changes are moot
	wake       chan struct{}      // cap 1: a change is pending or slots were freed

	// Owned by the poll goroutine.
	parts     map[int32]*partition // partitions being read
	paused    bool
	readID    [16]byte  // the topic's id in the latest fetch that had one
	checkedID time.Time // the latest look-up of the topic's id (unknownTopicID)
	fullFrom  time.Time // the pass that found the window full; zero while it has free slots
	warned    map[int32]fetchWarning
	held      map[int32]errHold // partitions held back after fetch errors (holdBack)
}

// change is a partition entering (add, from offset at) or leaving the
// reader; done is closed once it is applied.
type change struct {
	p      *partition
	add    bool
	at     int64
	resume bool // at is where the reader stalled p: read on with the leader epoch of the last record read
	done   chan struct{}
}

func newReader(m *module, cl *kgo.Client) *reader {
	return &reader{m: m, cl: cl, topic: m.cfg.Topic, wake: make(chan struct{}, 1), parts: map[int32]*partition{}, warned: map[int32]fetchWarning{}, held: map[int32]errHold{}}
}

// assign starts reading p at offset at, or restarts it there when it is
// being read already. It returns once the client has the new cursor.
func (r *reader) assign(p *partition, at int64) { r.request(change{p: p, add: true, at: at}) }

// readOn reads p again from at, the offset the reader stalled it at, as
// if it had not stalled: the Kafka client is given the leader epoch of
// the last record read, which it checks against the leader's log (a log
// that ends below at is reported, ErrDataLoss).
func (r *reader) readOn(p *partition, at int64) {
	r.request(change{p: p, add: true, at: at, resume: true})
}

// unassign stops reading p. Once it returns, no record of p is dispatched
// any more.
func (r *reader) unassign(p *partition) { r.request(change{p: p}) }

func (r *reader) request(c change) {
	c.done = make(chan struct{})
	r.mu.Lock()
	if r.exited {
		r.mu.Unlock()
		return
	}
	r.pending = append(r.pending, c)
	if r.cancelPoll != nil {
		r.cancelPoll()
	}
	r.mu.Unlock()
	r.signal()
	<-c.done
}

// signal wakes the poll goroutine when it waits for a change or a slot.
func (r *reader) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// run polls and dispatches until ctx ends.
func (r *reader) run(ctx context.Context) {
	defer r.exit()
	defer r.countFull(false)
	m := r.m
	failures := 0 // polls in a row that brought fetch errors and no record
	for {
		r.apply()
		if ctx.Err() != nil {
			return
		}
		free := cap(m.slots) - len(m.slots) // only this goroutine takes slots
		r.countFull(free == 0)
		if free == 0 || len(r.parts) == 0 {
			var timer *time.Timer
			var due <-chan time.Time
			if free == 0 {
				r.pause()
				// Commit what is acknowledged (that frees slots), at most
				// every commitAfter from here: with a backlog the window
				// fills after every refill, and a commit per refill kept
				// ZooKeeper writing back to back. ack's own rules usually
				// commit first.
				// While it stays full the committer is woken every
				// commitAfter: a commit that found nothing acknowledged yet
				// wakes nobody when records are acknowledged later.
				wait := m.untilCommitAfter()
				if wait <= 0 {
					m.lastKick.Store(monoNow())
					m.kickCommit()
					wait = commitAfter
				}
				timer = time.NewTimer(wait)
				due = timer.C
			}
			// Reading nothing (no partition, or a full window) for longer
			// than fetchErrorLogEvery, the repetitions held back of an
			// error that ended are logged when due all the same.
			var flushTimer *time.Timer
			var flush <-chan time.Time
			if at := r.flushWarnings(); !at.IsZero() {
				flushTimer = time.NewTimer(time.Until(at))
				flush = flushTimer.C
			}
			select {
			case <-r.wake:
			case <-due:
				m.lastKick.Store(monoNow())
				m.kickCommit()
			case <-flush: // logged by flushWarnings on the next pass
			case <-ctx.Done():
			}
			if timer != nil {
				timer.Stop()
			}
			if flushTimer != nil {
				flushTimer.Stop()
			}
			continue
		}
		r.resume()
		pollCtx, cancel := context.WithCancel(ctx)
		until := r.releaseHeld()
		if due := r.flushWarnings(); !due.IsZero() && (until.IsZero() || due.Before(until)) {
			until = due // back to log the repetitions of an error that may have ended
		}
		if !until.IsZero() {
			cancel()
			pollCtx, cancel = context.WithDeadline(ctx, until) // back to release it
		}
		r.mu.Lock()
		if len(r.pending) > 0 {
			r.mu.Unlock()
			cancel()
			continue
		}
		r.cancelPoll = cancel
		r.mu.Unlock()
		fs := r.cl.PollRecords(pollCtx, free)
		r.mu.Lock()
		r.cancelPoll = nil
		r.mu.Unlock()
		cancel()
		if records, failed, held := r.route(ctx, fs); failed && records == 0 && !held {
			// A fetch error the client does not retry by itself (a read
			// permission taken away, …) comes back at once on every poll:
			// asked again at once, the brokers were fetched from and a
			// warning logged thousands of times a second. A partition
			// read is held back on its own (holdBack), and the others
			// are read meanwhile; an error of no partition read is
			// waited for here. A change (a claim, a release) ends the
			// wait.
			failures++
			r.waitAfterErrors(ctx, backoff(failures, 100*time.Millisecond, time.Second))
		} else {
			failures = 0
		}
	}
}

// errHold is a partition held back after fetch errors: the errors in a
// row, the last one, and until when it is not fetched (paused).
type errHold struct {
	n      int
	last   time.Time
	until  time.Time
	paused bool
	// stalled: paused until the partition's restart (stall), not
	// until a time.
	stalled bool
}

// holdBack stops fetching partition id, which a fetch answered with an
// error the client does not retry by itself, for a wait growing from
// 100 ms to 1 s with the errors in a row: fetched again at once, it came
// back at once, thousands of times a second. Only that partition waits;
// kgo drops what it has buffered of it without moving its cursor.
func (r *reader) holdBack(id int32) {
	now := time.Now()
	h := r.held[id]
	if now.Sub(h.last) > 2*time.Second { // not in a row: the error had ended
		h.n = 0
	}
	h.n++
	h.last, h.until = now, now.Add(backoff(h.n, 100*time.Millisecond, time.Second))
	if !h.paused {
		r.cl.PauseFetchPartitions(map[string][]int32{r.topic: {id}})
		h.paused = true
	}
	r.held[id] = h
}

// releaseHeld fetches again the partitions whose wait is over, and
// returns when the next one ends (zero when none is held).
func (r *reader) releaseHeld() time.Time {
	var next time.Time
	var resume []int32
	now := time.Now()
	for id, h := range r.held {
		switch {
		case !h.paused, h.stalled:
		case !now.Before(h.until):
			h.paused = false
			r.held[id] = h
			resume = append(resume, id)
		case next.IsZero() || h.until.Before(next):
			next = h.until
		}
	}
	if len(resume) > 0 {
		r.cl.ResumeFetchPartitions(map[string][]int32{r.topic: resume})
	}
	return next
}

// forgetHold ends partition id's hold: it is removed, or starts again.
func (r *reader) forgetHold(id int32) {
	if h, ok := r.held[id]; ok {
		if h.paused {
			r.cl.ResumeFetchPartitions(map[string][]int32{r.topic: {id}})
		}
		delete(r.held, id)
	}
}

// waitAfterErrors waits d, or until a change or slots freed wake the
// goroutine, or ctx ends.
func (r *reader) waitAfterErrors(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.wake: // the loop applies a pending change first
	case <-ctx.Done():
	}
}

// countFull adds the time since the previous pass to
// ktransfer_window_full_seconds_total when the window was full then, and
// restarts the clock when it is full now. It is called on every pass of
// the poll loop (which wakes at least every commitAfter while the window is
// full) and when the loop returns: a stretch shows while it lasts and is
// not lost when the reader stops.
func (r *reader) countFull(full bool) {
	if !full && r.fullFrom.IsZero() {
		return
	}
	now := time.Now()
	if !r.fullFrom.IsZero() {
		r.m.stats.windowFull(now.Sub(r.fullFrom))
	}
	r.fullFrom = time.Time{}
	if full {
		r.fullFrom = now
	}
}

// exit marks the goroutine gone and lets every waiting change return.
func (r *reader) exit() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exited = true
	for _, c := range r.pending {
		close(c.done)
	}
	r.pending = nil
}

// apply hands the pending changes to the client: every removal (and the
// removal before a restart) in one RemoveConsumePartitions, then every
// start in one AddConsumePartitions.
func (r *reader) apply() {
	r.mu.Lock()
	changes := r.pending
	r.pending = nil
	r.mu.Unlock()
	if len(changes) == 0 {
		return
	}
	remove := map[int32]bool{}
	add := map[int32]change{}
	for _, c := range changes {
		id := c.p.id
		switch {
		case c.add && c.p.ctx.Err() != nil:
			// A released claim's, come late (its goroutine was between
			// its check of the context and the request): a newer claim
			// of the partition may be read by now, which it would
			// replace, and its unassign then remove. Nothing of a
			// released claim is dispatched anyway.
			continue
		case c.add:
			if _, reading := r.parts[id]; reading {
				remove[id] = true // restart: a fresh cursor at c.at
			}
			r.parts[id] = c.p
			add[id] = c
		case r.parts[id] == c.p: // not a newer claim of the same partition
			delete(r.parts, id)
			delete(add, id)
			remove[id] = true
		}
	}
	for id := range remove {
		r.forgetHold(id)
	}
	for id := range add {
		r.forgetHold(id) // a new cursor is fetched at once
	}
	if len(remove) > 0 {
		ids := make([]int32, 0, len(remove))
		for id := range remove {
			ids = append(ids, id)
		}
		r.cl.RemoveConsumePartitions(map[string][]int32{r.topic: ids})
	}
	if len(add) > 0 {
		offsets := make(map[int32]kgo.Offset, len(add))
		for id, c := range add {
			offsets[id] = kgo.NewOffset().At(c.at)
			if c.resume && c.at == c.p.next {
				offsets[id] = offsets[id].WithEpoch(c.p.readEpoch)
			} else {
				c.p.readEpoch = -1
			}
			c.p.next, c.p.stalled = c.at, false
		}
		r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: offsets})
		for _, c := range add {
			// A topic found created again after the restart took its
			// offset (restartAt clears the mark before): restarted again.
			if c.p.recreated.Load() {
				r.stallAt(c.p, c.at)
				continue
			}
			// A log found truncated below the restart offset while the
			// partition waited for it: restarted again, at the new end.
			if lost := c.p.lostTo.Swap(-1); lost >= 0 {
				if lost < c.at {
					c.p.truncated.Store(true) // before the send: its goroutine reads it after
					r.stallAt(c.p, lost)
				}
			}
		}
	}
	for _, c := range changes {
		close(c.done)
	}
}

// stall stops dispatching p's records and has its goroutine apply
// offset_out_of_range from the next offset, which restarts it.
//
// p is not fetched until its restart adds it again (apply's forgetHold):
// the Kafka client keeps a partition answered OFFSET_OUT_OF_RANGE (no
// reset offset) and fetched it after every poll, each answer dropped
// here, hundreds a second while the restart waited (a backend's record
// still being retried, a passing answer's growing wait). A partition
// stalled from an offset (stallAt: a truncated log, kgo gone back) is
// fetched on: a second truncation while its restart waits shows only so
// (lostTo).
func (r *reader) stall(p *partition) {
	// Stalled from an offset and fetched on, it may be answered out of
	// range too (restarted without its epoch above a log end that went
	// back): paused then as well.
	r.stallAt(p, p.next)
	if h := r.held[p.id]; h.stalled {
		return
	} else if !h.paused {
		r.cl.PauseFetchPartitions(map[string][]int32{r.topic: {p.id}})
	}
	r.held[p.id] = errHold{paused: true, stalled: true}
}

// stallAt is stall from offset at, fetched on.
func (r *reader) stallAt(p *partition, at int64) {
	if !p.stalled {
		p.stalled = true
		p.outOfRange <- at // cap 1, and sent once per start
	}
}

// wentBack restarts p at offset at, below its next offset, where kgo went
// back to by itself (see route).
func (r *reader) wentBack(p *partition, at int64) {
	p.log.Error("kafka client went back below the records read (a new leader without their history); reading again from there",
		"offset", at, "next", p.next)
	r.m.stats.outOfRange()
	p.truncated.Store(true) // before the send: its goroutine reads it after
	r.stallAt(p, at)
}

// dataLoss handles kgo's report that partition p's log now ends below
// the offset it had read to (a leader elected uncleanly lost records, and
// the offsets from its log end on go to the records written next). kgo
// reads on from the new end; records it returns there below p.next are
// not the ones dispatched at those offsets, so p restarts at the new end:
// what was dispatched finishes first, then that offset is stored (below
// the committed one) and read from.
func (r *reader) dataLoss(p *partition, lost *kgo.ErrDataLoss) {
	p.log.Error("kafka lost records the module had read (a leader's log ends below them); reading again from the new log end",
		"consumed_to", lost.ConsumedTo, "reset_to", lost.ResetTo, "next", p.next)
	r.m.stats.outOfRange()
	switch {
	case lost.ResetTo >= p.next:
	case !p.stalled:
		p.truncated.Store(true) // before the send: its goroutine reads it after
		r.stallAt(p, lost.ResetTo)
	case !p.recreated.Load():
		// Waiting on another restart (an out-of-range answer, a client
		// gone back): its offset may be above the new log end, so the
		// partition restarts here instead (run), or again once it has
		// (apply).
		for {
			was := p.lostTo.Load()
			if was >= 0 && was <= lost.ResetTo || p.lostTo.CompareAndSwap(was, lost.ResetTo) {
				break
			}
		}
	}
}

// topicCheckTimeout bounds the look-up of the topic's id after
// UNKNOWN_TOPIC_ID (in the poll goroutine: releases wait for it), and
// topicCheckEvery spaces those look-ups while the answer lasts.
const (
	topicCheckTimeout = 2 * time.Second
	topicCheckEvery   = time.Second
)

// unknownTopicID handles a fetch answered UNKNOWN_TOPIC_ID. The brokers
// are asked for the topic's id: another id than the one the records were
// read with, the topic was deleted and created again (topicGone). The
// same id (a broker that does not know it yet), no such topic, no answer,
// or no id read yet to compare with: a warning, and kgo fetches again; a
// lasting answer is checked again at most every topicCheckEvery. No such
// topic is no proof of a deletion: the broker that does not know the id
// yet does not know the topic either, and the look-up may reach it; a
// topic deleted for good has nothing to read, and one created again is
// found by its new id. Restarting on a transient answer would push the
// topic again from its oldest record.
func (r *reader) unknownTopicID(ctx context.Context, err error) {
	if time.Since(r.checkedID) < topicCheckEvery {
		return
	}
	r.checkedID = time.Now()
	ctx, cancel := context.WithTimeout(ctx, topicCheckTimeout)
	defer cancel()
	id, gone, lerr := r.m.t.topicID(ctx, r.topic)
	switch {
	case lerr != nil:
		r.m.log.Warn("kafka fetch error; the topic's id could not be checked", "err", err, "check_err", lerr)
	case gone:
		r.m.log.Warn("kafka fetch error; the topic is unknown (deleted, or a broker not knowing it yet): checked again until it has an id", "err", err)
	case r.readID == [16]byte{} || id == r.readID:
		r.m.log.Warn("kafka fetch error; the topic still has the id it is read with", "err", err)
	default:
		r.topicGone(err)
	}
}

// topicGone handles a topic found deleted and created again under the
// same name. kgo keeps fetching by the id of the
// deleted topic and never reads the new one (it does not adopt a new id
// by itself), so the topic is purged from the client: a partition added
// again is looked up by name. The offsets of every partition read belong
// to the deleted topic, so each is handled as an offset Kafka no longer
// has (offset_out_of_range: logged, counted, restarted from the new
// topic's oldest or newest record once the topic exists, or the module
// stops). A partition already stalled is marked only: the restart under
// way took an offset of the deleted topic, and its goroutine starts it
// again (restartAt). So is a partition being released: its hand-over
// stores the new topic's start (handOverNewTopicStart). One whose unassign
// was applied already (its hand-over waiting for its pushes) is no longer
// read, but the module holds it until its release commits (m.parts): it is
// marked first, before any restart this starts can store an offset.
func (r *reader) topicGone(err error) {
	if f := beforeTopicGone.Load(); f != nil {
		(*f)(r)
	}
	r.m.log.Error("topic unknown by the id it was read with: deleted and created again; its partitions restart as offset_out_of_range says", "err", err)
	r.cl.PurgeTopicsFromClient(r.topic)
	r.m.mu.Lock()
	for _, p := range r.m.parts {
		if p.ctx.Err() != nil {
			p.recreated.Store(true)
		}
	}
	r.m.mu.Unlock()
	for _, p := range r.parts {
		p.recreated.Store(true) // before the send: its goroutine reads it after
		if p.ctx.Err() == nil {
			r.stall(p)
		}
	}
}

// beforeTopicGone, when a test sets it, runs in the poll goroutine before
// topicGone handles the topic found created again.
var beforeTopicGone atomic.Pointer[func(*reader)]

// fetchErrorLogEvery spaces the warnings of one partition's fetch error
// while it lasts: a poll that brings another partition's records brings
// the error again too, and was a warning line each.
const fetchErrorLogEvery = 10 * time.Second

// fetchWarning is the last fetch error logged for a partition.
type fetchWarning struct {
	err      string
	at       time.Time
	repeated int          // the same error since, not logged
	log      *slog.Logger // the partition's
}

// warnFetchError logs partition id's fetch error, the same one at most
// every fetchErrorLogEvery (with how often it came meanwhile).
func (r *reader) warnFetchError(log *slog.Logger, id int32, err error) {
	now, w := time.Now(), r.warned[id]
	if w.err == err.Error() && now.Sub(w.at) < fetchErrorLogEvery {
		w.repeated++
		r.warned[id] = w
		return
	}
	switch {
	case w.err == err.Error() && w.repeated > 0:
		log.Warn("kafka fetch error", "err", err, "repeated", w.repeated)
	case w.repeated > 0:
		// Another error: the previous one's count first.
		w.log.Warn("kafka fetch error", "err", w.err, "repeated", w.repeated)
		fallthrough
	default:
		log.Warn("kafka fetch error", "err", err)
	}
	r.warned[id] = fetchWarning{err: err.Error(), at: now, log: log}
}

// flushWarnings logs the repetitions not logged yet of the fetch errors
// last logged fetchErrorLogEvery ago or more, whether or not the error
// still comes (else an error that stopped meanwhile showed as one), and
// returns when the next ones are due (zero when none waits).
func (r *reader) flushWarnings() time.Time {
	var next time.Time
	now := time.Now()
	for id, w := range r.warned {
		if w.repeated == 0 {
			continue
		}
		due := w.at.Add(fetchErrorLogEvery)
		if now.Before(due) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		w.log.Warn("kafka fetch error", "err", w.err, "repeated", w.repeated)
		w.at, w.repeated = now, 0
		r.warned[id] = w
	}
	return next
}

func (r *reader) pause() {
	if !r.paused {
		r.cl.PauseFetchTopics(r.topic)
		r.paused = true
	}
}

func (r *reader) resume() {
	if r.paused {
		r.cl.ResumeFetchTopics(r.topic)
		r.paused = false
	}
}

// route dispatches the polled records to their partitions. Records of a
// partition no longer read, or being released, are dropped: they are not
// dispatched and so never committed. It returns how many records it
// handed on, whether the fetches carried an error, and whether a
// partition read was held back for one (holdBack).
func (r *reader) route(ctx context.Context, fs kgo.Fetches) (records int, failed, held bool) {
	m := r.m
	type partErr struct {
		p   *partition
		err error
	}
	var warn []partErr // logged once the records are routed: at the offset the partition stands at
	fs.EachTopic(func(ft kgo.FetchTopic) {
		if ft.Topic == r.topic && ft.TopicID != ([16]byte{}) {
			r.readID = ft.TopicID
		}
	})
	fs.EachError(func(topic string, id int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrClientClosed) {
			return
		}
		failed = true
		p := r.parts[id]
		if topic != r.topic || p == nil {
			r.warnFetchError(m.log.With("partition", id), id, err)
			return
		}
		var lost *kgo.ErrDataLoss
		if errors.As(err, &lost) {
			r.dataLoss(p, lost)
			return
		}
		if errors.Is(err, kerr.OffsetOutOfRange) {
			// kgo stops the partition (ConsumeResetOffset(NoResetOffset)):
			// its goroutine applies offset_out_of_range and restarts it.
			r.stall(p)
			return
		}
		r.holdBack(id)
		held = true
		if errors.Is(err, kerr.UnknownTopicID) && !p.stalled {
			r.unknownTopicID(ctx, err)
			return
		}
		warn = append(warn, partErr{p, err})
	})
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		p := r.parts[fp.Partition]
		if fp.Topic != r.topic || p == nil || p.ctx.Err() != nil || p.stalled {
			return
		}
		if fp.Err == nil {
			p.noteFetchedLogEnd(fp.HighWatermark)
		}
		for _, rec := range fp.Records {
			if rec.Offset < p.next {
				// kgo went back without an error: a new leader without the
				// history of the epoch read in (an unclean election) has
				// it read again, by time, what replaced the records read.
				// Those offsets hold records never dispatched.
				r.wentBack(p, rec.Offset)
				return
			}
			rr := &record{msg: rec, part: p}
			if rec.Attrs.IsControl() {
				// A transaction's commit or abort marker: nothing to push,
				// but the commit point must pass it (and the aborted
				// records before it, which read_committed never returns),
				// or the committed offset would stop short of the log end.
				if !m.pass(p.ctx, rr) {
					return
				}
			} else if rr.msg = own(rec); !m.dispatch(p.ctx, rr) {
				return
			}
			p.next, p.readEpoch = rec.Offset+1, rec.LeaderEpoch
			records++
		}
	})
	for _, w := range warn {
		// A lasting error (a corrupt record batch, …) stops the
		// partition at this offset.
		r.warnFetchError(w.p.log.With("offset", w.p.next), w.p.id, w.err)
	}
	return records, failed, held
}

// own copies a record out of the Kafka client's buffers. A record's key,
// value and header values point into the fetch it came in (the whole
// response, uncompressed, or its decompressed batch), and the record into
// its batch's records: a record waiting in the window held all of that,
// long after the fetch's other records were pushed (a stuck key's records
// held a fetch each). A copy holds its own bytes only, so that a module's
// memory is its window's records plus the client's fetches.
func own(rec *kgo.Record) *kgo.Record {
	n := len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		n += len(h.Value)
	}
	buf := make([]byte, 0, n)
	keep := func(b []byte) []byte {
		if b == nil {
			return nil // no key, a null value: stays so
		}
		buf = append(buf, b...)
		return buf[len(buf)-len(b) : len(buf) : len(buf)]
	}
	cp := *rec
	cp.Key, cp.Value = keep(rec.Key), keep(rec.Value)
	if len(rec.Headers) > 0 {
		cp.Headers = make([]kgo.RecordHeader, len(rec.Headers))
		for i, h := range rec.Headers {
			cp.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: keep(h.Value)}
		}
	}
	return &cp
}
