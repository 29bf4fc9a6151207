package ktransfer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
)

// hdrValueOmitted marks a dead letter written without the record's value
// (Kafka refused the whole record for good); its value says the record's
// size and why.
const hdrValueOmitted = "ktransfer-value-omitted"

// hdrValueNull marks the dead letter of a record whose value was null,
// written empty (a null one is a tombstone in a compacted topic).
const hdrValueNull = "ktransfer-value-null"

// hdrHeaders is the dead-letter header that gives how many headers of the
// record's own come before ktransfer's: a dead letter without it was
// written before dead letters kept them (replayOne).
const hdrHeaders = "ktransfer-headers"

// Bounds of a dead-letter batch: kgo's default (the one it uses for a topic
// whose max.message.bytes is not known) and the range kgo accepts.
const (
	defaultBatchMax = 1_000_012
	minBatchMax     = 512
	maxBatchMax     = 1 << 30
)

// deadLetter writes r to the dead-letter topic, retrying until it is
// written or ctx ends: a record is acknowledged only once it is safe.
// A dead letter Kafka refuses for good (deadLetterRefused: larger than the
// topic takes, invalid) is written again without the record's value, with
// a ktransfer-value-omitted header; when even that is refused for good the
// record is given up without a dead letter, logged and counted, so that it
// never holds the module. Like a push, a write waits while ZooKeeper is
// not fresh in the claim's session (mayPush). It reports false only when
// ctx ended, r's partition was released meanwhile, or the release
// abandoned the write (writeDeadLetter).
func (m *module) deadLetter(ctx context.Context, r *record, reason string) bool {
	topic := m.cfg.DeadLetterTopic
	// The record's own headers first (a replay needs its target header),
	// then ktransfer's.
	headers := append(slices.Clip(r.msg.Headers),
		kgo.RecordHeader{Key: "ktransfer-module", Value: []byte(m.cfg.Name)},
		kgo.RecordHeader{Key: "ktransfer-reason", Value: []byte(reason)},
		kgo.RecordHeader{Key: "ktransfer-topic", Value: []byte(r.msg.Topic)},
		kgo.RecordHeader{Key: "ktransfer-partition", Value: []byte(strconv.Itoa(int(r.msg.Partition)))},
		kgo.RecordHeader{Key: "ktransfer-offset", Value: []byte(strconv.FormatInt(r.msg.Offset, 10))},
		kgo.RecordHeader{Key: hdrHeaders, Value: []byte(strconv.Itoa(len(r.msg.Headers)))},
	)
	var key []byte
	if len(r.msg.Key) > 0 {
		key = r.msg.Key
	}
	value := r.msg.Value
	if value == nil {
		// A null value (a deletion in a compacted topic) is written empty,
		// as its push carried it: null, it would be a tombstone in a
		// compacted dead-letter topic, which drops the key's dead letters.
		value = []byte{}
		headers = append(headers, kgo.RecordHeader{Key: hdrValueNull, Value: []byte("1")})
	}
	var refused error // why the whole record was refused; nil while it is tried
	solo := m.t.deadLetterSoloLock(topic)
	alone := false // the next write is the topic's only one in the client
	othersCut := 0 // writes failed with another record's context
	for n := 1; ; n++ {
		known, ok := m.t.deadLetterLimit(ctx, topic, m.log)
		if !ok {
			return false
		}
		if !known {
			// Not written before the limit is known (the topic missing, the
			// brokers not answering): the client fixes the batch bound of a
			// partition it meets for good, kgo's default until told.
			m.stats.deadLetterWriteFailed()
			m.log.Error("dead-letter write waits for the topic's max.message.bytes; retrying",
				"dead_letter_topic", topic, "partition", r.msg.Partition, "offset", r.msg.Offset, "attempt", n)
			if !sleep(ctx, backoff(n, time.Second, 30*time.Second)) {
				return false
			}
			continue
		}
		// A dead letter is written for the partition as a push is: only
		// while ZooKeeper is fresh in the claim's session (after a pause
		// the session watcher may not have run yet, and the next owner
		// may be pushing the record).
		if r.part != nil && !m.mayPush(r.part) {
			return false
		}
		// Acknowledged by every in-sync replica, idempotent (kgo's
		// defaults); a write not done within deadLetterTimeout is retried
		// here. A record is not reused: kgo writes into it.
		rec := &kgo.Record{Topic: topic, Key: key, Value: value, Headers: headers}
		if h := beforeDeadLetterWrite.Load(); h != nil && r.part != nil {
			(*h)(r.part)
		}
		cl, abandoned, err := m.writeDeadLetter(ctx, r, rec, solo, alone, refused != nil)
		if errors.Is(err, errDeadLetterLimitForgotten) {
			continue // the limit asked again, at once
		}
		if abandoned || err != nil && ctx.Err() != nil {
			// Stopped by the release or the module's stop (the client
			// fails a write not sent yet whose context ended): no failure,
			// and nothing sent again.
			return false
		}
		if errors.Is(err, context.Canceled) && !errors.Is(err, kgo.ErrRecordTimeout) && othersCut < maxOthersCut {
			// Failed with another record's context, this one's live: kgo
			// fails every unsent batch of a dead-letter partition with the
			// context error of its first record (another partition's dead
			// letter, released — cancelled — perhaps another module's).
			// Nothing of it was sent: sent again at once, not a failed
			// write. Not a deadline error: a dial's timeout matches
			// context.DeadlineExceeded, a failure to count and log.
			othersCut++
			n--
			continue
		}
		if deadLetterRefused(err) && !alone {
			// kgo may have batched it with other dead letters of the topic
			// (a batch bound above the topic's limit: not told, or lowered
			// since): the broker refuses the whole batch. Sent again alone,
			// a refusal is this record's own.
			alone, n = true, 0
			continue
		}
		attrs := []any{"dead_letter_topic", topic, "partition", r.msg.Partition, "offset", r.msg.Offset}
		switch {
		case err == nil && refused == nil:
			m.stats.deadLettered()
			return true
		case err == nil:
			m.stats.deadLettered()
			m.stats.deadLetterWithoutValue()
			m.log.Error("dead letter written without the record's value; the value is in the record's own topic",
				append(attrs, "value_bytes", len(r.msg.Value), "err", refused)...)
			return true
		case deadLetterRefused(err) && refused == nil:
			// Sent again at once, without the value: an empty value, not a
			// null one (a tombstone in a compacted topic).
			refused, value, n = err, []byte{}, 0
			headers = append(slices.Clip(headers), kgo.RecordHeader{Key: hdrValueOmitted,
				Value: fmt.Appendf(nil, "%d bytes: %v", len(r.msg.Value), err)})
			continue
		case deadLetterRefused(err):
			m.stats.deadLetterDropped()
			m.log.Error("dead letter refused even without the record's value; the record is given up without one",
				append(attrs, "key", string(r.msg.Key), "reason", reason, "value_bytes", len(r.msg.Value), "first_err", refused, "err", err)...)
			return true
		}
		if errors.Is(err, kerr.UnknownTopicID) && cl != nil {
			// The topic was deleted and created again, or a broker does
			// not know it yet. The client writes by the id it learnt
			// first and never adopts another: it is replaced, and the
			// next one looks the topic up again under a new producer id
			// (retireDeadLetterClient).
			if !m.t.retireDeadLetterClient(topic, cl, solo, abandonedOf(r), ctx.Done(), "dead-letter topic unknown by its id; its Kafka client is replaced") {
				return false
			}
		}
		m.stats.deadLetterWriteFailed()
		m.log.Error("dead-letter write failed; retrying", append(attrs, "attempt", n, "err", err)...)
		if !sleep(ctx, backoff(n, time.Second, 30*time.Second)) {
			return false
		}
	}
}

// maxOthersCut bounds the writes of one dead letter sent again at once
// after kgo failed them with another record's context; past it they are
// retried as failures (counted, logged, after a growing wait).
const maxOthersCut = 10

// beforeDeadLetterWrite, when a test sets it, runs before each write of a
// dead letter of a partition's record.
var beforeDeadLetterWrite atomic.Pointer[func(*partition)]

// writeDeadLetter writes rec and waits for Kafka's answer, unless the
// release of r's partition abandons the write first (partition.abandoned:
// at shutdown_timeout_ms on a hand-over, at once on a drop or when
// deposed); abandoned is then true and the record is left uncommitted. A
// write is not started once ctx ended or the release abandoned the
// partition's writes: the client sends a record whose context ended
// behind a batch of the topic's partition in flight, and it would be a
// dead letter of a record the next owner or run has. A release cannot end the
// write itself: kgo keeps an idempotent write it sent until the broker
// answers, whatever its context (a request the broker holds, a connection
// timed out and the request sent again), and the worker waited as long.
// The topic's lock (solo: shared, or alone when alone) is taken before the
// write and given back when kgo answers, past an abandon too: a client
// retired or a write alone must not overlap a record still in the client. An abandoned
// write the broker appends later is a dead letter written after all, of a
// record the next owner or run pushes or gives up again: it is logged and
// counted in ktransfer_dead_lettered_total (omitted: written without the
// value), not as a record given up. cl is the topic's client the write
// went to (deadLetterClient, taken under the lock: not one retired
// meanwhile), nil when none was.
func (m *module) writeDeadLetter(ctx context.Context, r *record, rec *kgo.Record, solo *sync.RWMutex, alone, omitted bool) (cl *kgo.Client, abandoned bool, err error) {
	stop := abandonedOf(r)
	if stopped(ctx, stop) {
		return nil, true, nil
	}
	try, lock, unlock := solo.TryRLock, solo.RLock, solo.RUnlock
	if alone {
		try, lock, unlock = solo.TryLock, solo.Lock, solo.Unlock
	}
	if !m.t.lockUnless(try, lock, unlock, stop, ctx.Done()) {
		return nil, true, nil
	}
	if stopped(ctx, stop) { // while the lock was awaited
		unlock()
		return nil, true, nil
	}
	if cl, err = m.t.deadLetterClient(rec.Topic); err != nil {
		unlock()
		return nil, false, err
	}
	var mu sync.Mutex // guards late and the send on done
	late := false     // abandoned: the answer is not waited for
	done := make(chan error, 1)
	m.t.deadLetterWrites.Go(func() {
		// ProduceSync, not Produce: it sends the record at once, without
		// the client's linger.
		err := cl.ProduceSync(ctx, rec).FirstErr()
		unlock()
		mu.Lock()
		defer mu.Unlock()
		if !late {
			done <- err
			return
		}
		if err == nil {
			m.stats.deadLettered()
			if omitted {
				m.stats.deadLetterWithoutValue()
			}
			m.log.Warn("dead letter abandoned at a release written after all; its record was left to the next owner or run",
				"dead_letter_topic", rec.Topic, "partition", r.msg.Partition, "offset", r.msg.Offset)
		}
	})
	select {
	case err := <-done:
		return cl, false, err
	case <-stop:
	}
	mu.Lock()
	defer mu.Unlock()
	select {
	case err := <-done: // answered meanwhile
		return cl, false, err
	default:
		late = true
		return cl, true, nil
	}
}

// abandonedOf is the channel closed when the dead-letter writes of r's
// partition are abandoned (nil: never).
func abandonedOf(r *record) <-chan struct{} {
	if r.part == nil {
		return nil
	}
	return r.part.abandoned
}

// stopped reports whether ctx ended or stop is closed.
func stopped(ctx context.Context, stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return ctx.Err() != nil
	}
}

// lockUnless takes a lock (try or lock, given back by unlock) unless stop
// or done is closed first: then it reports false, and the lock is given
// back as soon as it is taken (the write holding it ends when Kafka answers
// or the client closes). done is the write's context's: a write whose
// context ended is not sent, so a release (which ends it at once) does not
// wait shutdown_timeout_ms for the lock. The goroutine that waits for the
// lock is one of deadLetterWrites, which Close waits for once the clients
// are closed.
func (t *Transfer) lockUnless(try func() bool, lock, unlock func(), stop, done <-chan struct{}) bool {
	if try() {
		return true
	}
	if stop == nil && done == nil {
		lock()
		return true
	}
	got := make(chan struct{}) // unbuffered: taken by the caller, or not at all
	gaveUp := make(chan struct{})
	t.deadLetterWrites.Go(func() {
		lock()
		select {
		case got <- struct{}{}:
		case <-gaveUp:
			unlock()
		}
	})
	select {
	case <-got:
		return true
	case <-stop:
	case <-done:
	}
	close(gaveUp)
	return false
}

// deadLetterRefused is the one place that decides whether Kafka refused a
// dead letter for good: sent again as it is, it would be refused again.
func deadLetterRefused(err error) bool {
	switch {
	case errors.Is(err, kerr.MessageTooLarge), // larger than the topic's max.message.bytes, or than the client's batch bound
		errors.Is(err, kerr.RecordListTooLarge), // the same, said of the request's records
		errors.Is(err, kerr.InvalidRecord):      // refused by the broker's validation (no key for a compacted topic, …)
		return true
	default:
		// Everything else may pass later and is retried: a leader moving,
		// a timeout, brokers away, the topic missing or not writable by
		// this principal (until an operator fixes it).
		return false
	}
}

// deadLetterSoloLock is topic's lock for deciding that a dead letter is
// refused for good (Transfer.deadLetterSolo).
func (t *Transfer) deadLetterSoloLock(topic string) *sync.RWMutex {
	t.deadLetterMaxMu.Lock()
	defer t.deadLetterMaxMu.Unlock()
	if t.deadLetterSolo == nil {
		t.deadLetterSolo = map[string]*sync.RWMutex{}
	}
	l := t.deadLetterSolo[topic]
	if l == nil {
		l = &sync.RWMutex{}
		t.deadLetterSolo[topic] = l
	}
	return l
}

// deadLetterClient is the Kafka client that writes dead letters to topic,
// made at its first write and after each retireDeadLetterClient: one per
// topic, so that a client replaced for a topic leaves the other topics'
// writes alone. Its writes are idempotent, acknowledged by every in-sync
// replica (kgo's defaults), given up after deadLetterTimeout, in batches
// no larger than the topic takes (deadLetterBatchMax).
//
// A client is made only while the topic's max.message.bytes is known: it
// fixes a partition's batch bound when it first meets the partition, and
// a write that found the limit known may get here after a retire forgot it
// (errDeadLetterLimitForgotten: the limit is asked again first).
func (t *Transfer) deadLetterClient(topic string) (*kgo.Client, error) {
	t.deadLetterMaxMu.Lock()
	cl, closed := t.deadLetterClients[topic], t.deadLetterClosed
	_, limitKnown := t.deadLetterMax[topic]
	t.deadLetterMaxMu.Unlock()
	switch {
	case closed:
		return nil, kgo.ErrClientClosed
	case cl != nil:
		return cl, nil
	case !limitKnown:
		return nil, errDeadLetterLimitForgotten
	}
	cl, err := kgo.NewClient(append(slices.Clip(t.kafkaOpts), kgo.RecordDeliveryTimeout(deadLetterTimeout),
		kgo.ProducerBatchMaxBytesFn(t.deadLetterBatchMax))...)
	if err != nil {
		return nil, fmt.Errorf("kafka client for dead-letter topic %s: %w", topic, err)
	}
	t.deadLetterMaxMu.Lock()
	defer t.deadLetterMaxMu.Unlock()
	if other := t.deadLetterClients[topic]; other != nil || t.deadLetterClosed {
		// Another write made one meanwhile, or the Transfer closed.
		cl.Close()
		if other == nil {
			return nil, kgo.ErrClientClosed
		}
		return other, nil
	}
	if t.deadLetterClients == nil {
		t.deadLetterClients = map[string]*kgo.Client{}
	}
	t.deadLetterClients[topic] = cl
	return cl, nil
}

// errDeadLetterLimitForgotten: a dead-letter topic's client was retired,
// and its max.message.bytes forgotten, while a write waited for the
// topic's lock; the write asks the limit again before a new client is made.
var errDeadLetterLimitForgotten = errors.New("the dead-letter topic's max.message.bytes was forgotten; asked again")

// retireDeadLetterClient closes cl, topic's dead-letter client, after an
// UNKNOWN_TOPIC_ID answer, and forgets the topic's max.message.bytes,
// asked again before the next write (a topic created again may have
// another). The next write makes a new client: it looks the topic up
// again by name, and writes under a new producer id. Forgetting the topic
// in the same client (a purge) would restart the topic's sequence numbers
// under the same producer id, and a broker that has them (the answer was
// transient, or the topic's id changed between a look-up and the
// client's) would take the retry for a duplicate of an earlier dead
// letter, answering success without appending it. It waits for the
// topic's writes in flight (solo, its lock; a close fails the records the
// client holds). It reports false, having done nothing, when stop is
// closed first (the partition's writes abandoned) or done (the write's
// context ended: its record is left uncommitted whatever the client, so a
// release does not wait shutdown_timeout_ms for a write of another record
// to end). A client retired already (by another write's answer) is left
// alone.
func (t *Transfer) retireDeadLetterClient(topic string, cl *kgo.Client, solo *sync.RWMutex, stop, done <-chan struct{}, why string) bool {
	if !t.lockUnless(solo.TryLock, solo.Lock, solo.Unlock, stop, done) {
		return false
	}
	t.retireLocked(topic, cl, solo, why)
	return true
}

// retireLocked is retireDeadLetterClient's work once solo is held alone;
// it gives solo back.
func (t *Transfer) retireLocked(topic string, cl *kgo.Client, solo *sync.RWMutex, why string) {
	t.deadLetterMaxMu.Lock()
	current := t.deadLetterClients[topic] == cl
	if current {
		delete(t.deadLetterClients, topic)
		delete(t.deadLetterMax, topic)
		if t.deadLetterRetired == nil {
			t.deadLetterRetired = map[string]uint64{}
		}
		t.deadLetterRetired[topic]++
	}
	t.deadLetterMaxMu.Unlock()
	solo.Unlock()
	if current {
		t.log.Info(why, "dead_letter_topic", topic)
		cl.Close()
	}
}

// retireUnusedDeadLetterClients retires the dead-letter clients of the
// topics no module of next writes to (a reload removed or changed their
// modules), each once the writes it holds are answered: in the background,
// since a write a release abandoned waits for the broker (Close waits for
// it with deadLetterWrites, once the clients are closed). The lock is
// tried, not waited for: a lock awaited alone would hold up the writes of
// a module a later reload points at the topic, behind the abandoned write.
// It gives up once the client is no longer the topic's, the Transfer is
// closed, or a module writes to the topic again.
func (t *Transfer) retireUnusedDeadLetterClients(next []*module) {
	used := map[string]bool{}
	for _, m := range next {
		used[m.cfg.DeadLetterTopic] = true
	}
	unused := t.unusedDeadLetterClients(used)
	for topic, cl := range unused {
		solo := t.deadLetterSoloLock(topic)
		t.deadLetterWrites.Go(func() {
			for !solo.TryLock() {
				time.Sleep(retireTry)
				if !t.stillUnused(topic, cl) {
					return
				}
			}
			if !t.stillUnused(topic, cl) {
				solo.Unlock()
				return
			}
			t.retireLocked(topic, cl, solo, "dead-letter topic no module writes to any more; its Kafka client is closed")
		})
	}
}

// retireTry is how often a retire of an unused dead-letter client tries
// the topic's lock.
const retireTry = 100 * time.Millisecond

// stillUnused reports whether cl is still topic's client, the Transfer
// open, and no module of the running list writes to topic.
func (t *Transfer) stillUnused(topic string, cl *kgo.Client) bool {
	t.deadLetterMaxMu.Lock()
	current := !t.deadLetterClosed && t.deadLetterClients[topic] == cl
	t.deadLetterMaxMu.Unlock()
	return current && !slices.ContainsFunc(t.liveModules(), func(m *module) bool { return m.cfg.DeadLetterTopic == topic })
}

// unusedDeadLetterClients are the dead-letter clients of the topics not
// in used.
func (t *Transfer) unusedDeadLetterClients(used map[string]bool) map[string]*kgo.Client {
	t.deadLetterMaxMu.Lock()
	defer t.deadLetterMaxMu.Unlock()
	unused := map[string]*kgo.Client{}
	for topic, cl := range t.deadLetterClients {
		if !used[topic] {
			unused[topic] = cl
		}
	}
	return unused
}

// closeDeadLetterClients closes the dead-letter clients (failing the
// writes they hold) and makes no other.
func (t *Transfer) closeDeadLetterClients() {
	t.deadLetterMaxMu.Lock()
	t.deadLetterClosed = true
	cls := t.deadLetterClients
	t.deadLetterClients = nil
	t.deadLetterMaxMu.Unlock()
	for _, cl := range cls {
		cl.Close()
	}
}

// topicID looks topic's id up; gone is true when the brokers say there is
// no such topic (deleted, or a broker that does not know it yet).
func (t *Transfer) topicID(ctx context.Context, topic string) (id [16]byte, gone bool, err error) {
	md, err := t.listTopic(ctx, topic)
	switch {
	case errors.Is(err, errNotInAnswer), errors.Is(err, kerr.UnknownTopicOrPartition):
		return id, true, nil
	case err != nil:
		return id, false, err
	}
	return md.id, false, nil
}

// deadLetterLimit makes sure the brokers were asked for topic's
// max.message.bytes before a dead letter is written there: the client
// fixes a partition's batch bound when it first meets the partition
// (deadLetterBatchMax). It asks once per process and topic, unless the
// brokers did not answer or do not know the topic yet: then known is
// false, and the write waits (asked again before the next try); a refusal
// (a principal that may not describe configs) leaves kgo's default. ok is
// false only when ctx ended.
//
// An answer asked before a retire (retireDeadLetterClient) and come after
// it is not stored: it may be the topic's before it was created again,
// and would bound the new client's batches for the client's life. The
// limit is asked again.
func (t *Transfer) deadLetterLimit(ctx context.Context, topic string, log *slog.Logger) (known, ok bool) {
	for {
		known, ok, again := t.askDeadLetterLimit(ctx, topic, log)
		if !again {
			return known, ok
		}
	}
}

// askDeadLetterLimit is one try of deadLetterLimit; again reports an
// answer not stored because a retire came meanwhile.
func (t *Transfer) askDeadLetterLimit(ctx context.Context, topic string, log *slog.Logger) (known, ok, again bool) {
	t.deadLetterMaxMu.Lock()
	_, known = t.deadLetterMax[topic]
	retired := t.deadLetterRetired[topic]
	t.deadLetterMaxMu.Unlock()
	if known {
		return true, true, false
	}
	limit, err := t.topicMaxBytes(ctx, topic)
	if ctx.Err() != nil {
		return false, false, false
	}
	var answered *kerr.Error
	if err != nil {
		if !errors.As(err, &answered) && !errors.Is(err, kafkaconf.ErrNoMaxBytes) || errors.Is(err, kerr.UnknownTopicOrPartition) {
			log.Warn("max.message.bytes of the dead-letter topic unknown; asked again before the write",
				"dead_letter_topic", topic, "err", err)
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				if t.askCreation(ctx, topic, log); ctx.Err() != nil {
					return false, false, false
				}
			}
			return false, true, false // not stored: asked again before the next try
		}
		log.Warn("max.message.bytes of the dead-letter topic unknown; kgo's default bounds its batches",
			"dead_letter_topic", topic, "default", defaultBatchMax, "err", err)
		limit = defaultBatchMax
	}
	t.deadLetterMaxMu.Lock()
	defer t.deadLetterMaxMu.Unlock()
	if t.deadLetterRetired[topic] != retired {
		return false, true, true
	}
	if t.deadLetterMax == nil {
		t.deadLetterMax = map[string]int32{}
	}
	t.deadLetterMax[topic] = limit
	return true, true, false
}

// askCreation asks the brokers for topic's metadata, allowing them to
// create it: brokers that create topics on use (auto.create.topics.enable)
// create a missing dead-letter topic, as a producer's first write would.
// The question of its max.message.bytes, asked before any write, creates
// nothing: without this the dead letters waited for ever.
func (t *Transfer) askCreation(ctx context.Context, topic string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, kafkaTimeout)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = true
	resp, err := req.RequestWith(ctx, t.client)
	switch {
	case err != nil:
	case len(resp.Topics) != 1:
		err = fmt.Errorf("%d topics in the answer", len(resp.Topics))
	default:
		err = kerr.ErrorForCode(resp.Topics[0].ErrorCode)
	}
	switch {
	case err == nil:
		log.Info("dead-letter topic created on use by the brokers", "dead_letter_topic", topic)
	case errors.Is(err, kerr.LeaderNotAvailable):
		log.Info("dead-letter topic being created on use by the brokers", "dead_letter_topic", topic)
	case ctx.Err() == nil:
		log.Debug("dead-letter topic not created on use", "dead_letter_topic", topic, "err", err)
	}
}

// deadLetterBatchMax is the largest record batch the client writes to
// topic (kgo.ProducerBatchMaxBytesFn): the topic's max.message.bytes once
// known, kgo's default before, within the range kgo accepts.
func (t *Transfer) deadLetterBatchMax(topic string) int32 {
	t.deadLetterMaxMu.Lock()
	limit, ok := t.deadLetterMax[topic]
	t.deadLetterMaxMu.Unlock()
	if !ok {
		return defaultBatchMax
	}
	return min(max(limit, minBatchMax), maxBatchMax)
}

// topicConfig asks the brokers for topic's max.message.bytes and
// cleanup.policy, within kafkaTimeout.
func (t *Transfer) topicConfig(ctx context.Context, topic string) (kafkaconf.TopicConfig, error) {
	ctx, cancel := context.WithTimeout(ctx, kafkaTimeout)
	defer cancel()
	return kafkaconf.DescribeTopic(ctx, t.client, topic)
}

// topicMaxBytes asks the brokers for topic's max.message.bytes, within
// kafkaTimeout.
func (t *Transfer) topicMaxBytes(ctx context.Context, topic string) (int32, error) {
	tc, err := t.topicConfig(ctx, topic)
	return tc.MaxBytes, err
}
