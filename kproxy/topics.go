package kproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
)

// missingTTL is how long a topic the brokers said does not exist is
// answered 404 without asking again.
const missingTTL = time.Second

// maxMissing bounds the negative cache, so that requests naming endless
// distinct garbage topics cannot grow memory.
const maxMissing = 10_000

// topicCheck answers whether a topic exists, asking the brokers about that
// one topic (a metadata request) the first time it is named; a topic seen
// to exist is not asked about again (should it be deleted, the producer's
// own error says so), one said not to exist is remembered for missingTTL.
type topicCheck struct {
	client     *kgo.Client
	autoCreate bool

	mu      sync.Mutex
	missing map[string]time.Time // topic → until when it is known missing

	knownMu sync.RWMutex
	known   map[string]topicInfo // topics seen to exist
	// limits are the topics' max.message.bytes as last read, kept when a
	// topic is forgotten: kgo may learn of its partitions again (a purge)
	// before kproxy reads the limit anew, and sizes their batches then.
	limits map[string]int32
	// maxBytes is max_message_bytes: the largest record batch sent to any
	// topic; a topic whose max.message.bytes is lower gets smaller ones.
	maxBytes int32

	// rechecks are the readings of compacted topics under way
	// (refusesKeyless), one per topic, shared by the records that wait
	// for it.
	recheckMu sync.Mutex
	rechecks  map[string]*recheck
}

// recheck is a reading of a compacted topic's configuration; info and err
// are set once done is closed.
type recheck struct {
	done chan struct{}
	info topicInfo
	err  error
}

// topicInfo is what kproxy knows of a topic that exists.
type topicInfo struct {
	name string // reused, so that a known topic costs no allocation
	// maxBytes is the largest record batch the topic takes: the lower of
	// max_message_bytes and the topic's max.message.bytes.
	maxBytes int32
	// compacted: the topic's cleanup.policy has compact, as read at read
	// (refusesKeyless).
	compacted bool
	read      time.Time
}

func newTopicCheck(autoCreate bool, maxBytes int) *topicCheck {
	return &topicCheck{autoCreate: autoCreate, maxBytes: int32(maxBytes),
		missing: map[string]time.Time{}, known: map[string]topicInfo{}, limits: map[string]int32{}}
}

// exists returns what kproxy knows of the topic when the brokers know it,
// a *kerr.Error when they refuse it (UNKNOWN_TOPIC_OR_PARTITION, …), or the
// error that kept it from finding out (no broker answered before dl ends,
// nor within timeout when it is not 0: unreachable). dl is the deadline of
// the records waiting for the answer: the look-ups are part of their
// produce_timeout_ms, never added to it.
func (tc *topicCheck) exists(dl context.Context, name []byte, timeout time.Duration) (topicInfo, error) {
	tc.knownMu.RLock()
	info, ok := tc.known[string(name)] // no allocation for the lookup
	tc.knownMu.RUnlock()
	if ok {
		return info, nil
	}
	return tc.lookup(dl, string(name), timeout)
}

// lookup asks the brokers about topic (exists, for a topic not known or
// whose configuration is to be read again) and keeps what they tell.
func (tc *topicCheck) lookup(dl context.Context, name string, timeout time.Duration) (topicInfo, error) {
	ctx, cancel := dl, context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(dl, timeout)
	}
	defer cancel()
	info := topicInfo{name: name, maxBytes: tc.maxBytes}
	if err := tc.ask(ctx, info.name); err != nil {
		return topicInfo{}, err
	}
	conf, err := kafkaconf.DescribeTopic(ctx, tc.client, info.name)
	info.compacted, info.read = conf.Compacted, time.Now()
	switch {
	case err == nil:
		info.maxBytes = min(info.maxBytes, conf.MaxBytes)
	case unreachable(err):
		// No answer in time: max_message_bytes serves these records,
		// and the next request asks again.
		return info, nil
	}
	tc.knownMu.Lock()
	tc.known[info.name] = info
	tc.limits[info.name] = info.maxBytes
	tc.knownMu.Unlock()
	return info, nil
}

// batchMaxBytes is the largest record batch kproxy builds for topic (kgo's
// ProducerBatchMaxBytesFn): batches always fit the topic's
// max.message.bytes, so a broker never refuses a batch of records that
// each fit.
func (tc *topicCheck) batchMaxBytes(topic string) int32 {
	tc.knownMu.RLock()
	limit, ok := tc.limits[topic]
	tc.knownMu.RUnlock()
	if !ok {
		return tc.maxBytes
	}
	return limit
}

// forget drops what is known of topic: the next request asks the brokers
// again (after an UNKNOWN_TOPIC_ID: it was deleted, perhaps re-created).
func (tc *topicCheck) forget(topic string) {
	tc.knownMu.Lock()
	delete(tc.known, topic)
	delete(tc.limits, topic)
	tc.knownMu.Unlock()
}

// stale makes kproxy ask the brokers about topic again at the next request
// (after a MESSAGE_TOO_LARGE: its max.message.bytes was lowered), keeping
// the limit last read for the batches built meanwhile.
func (tc *topicCheck) stale(topic string) {
	tc.knownMu.Lock()
	delete(tc.known, topic)
	tc.knownMu.Unlock()
}

// compactedRecheck is how old what kproxy read of a compacted topic may be
// when it refuses a keyless record for it (refusesKeyless), and how often
// at most a refusal of records (INVALID_RECORD) has it read again
// (recheck): an operator may switch cleanup.policy either way (README:
// keyless records in the spool). A 400 tells a client to drop its record:
// a topic switched to delete takes keyless records again within about as
// long as its brokers take to apply the change. The records arriving
// meanwhile share one reading: at most one per topic and compactedRecheck.
var compactedRecheck = time.Second

// refusesKeyless tells whether a record without a key to the topic info
// describes is to be refused: the topic is compacted, which Kafka refuses
// such a record for, and with it the whole batch holding it (the other
// records of the batch, of any client, refused alike). What was read of it
// is read again, within dl and timeout (not 0: spool_after_ms, for a
// record that may be spooled; as topicFor), when it is older than
// compactedRecheck: the topic's info as it stands is returned. What was
// known of the topic stays until an answer replaces it: a broker that does
// not answer makes no record of the topic look it up again.
func (tc *topicCheck) refusesKeyless(dl context.Context, info topicInfo, timeout time.Duration) (topicInfo, bool) {
	if !info.compacted {
		return info, false
	}
	if time.Since(info.read) < compactedRecheck {
		return info, true
	}
	fresh, err := tc.recheckCompacted(dl, info.name, timeout)
	if err != nil {
		// Refused or not answered meanwhile: the record's own fate tells.
		return info, false
	}
	return fresh, fresh.compacted
}

// recheckCompacted reads topic's configuration again (lookup), or waits,
// within dl and timeout, for the reading of it under way. The reading is
// bounded by the deadline of the record that started it: a record waiting
// longer sees its error and goes on. A reading that ended since the
// caller took what it knew of the topic serves it too: one reading per
// topic and compactedRecheck, also for a record whose handler was
// delayed past the shared reading's end.
func (tc *topicCheck) recheckCompacted(dl context.Context, topic string, timeout time.Duration) (topicInfo, error) {
	tc.recheckMu.Lock()
	r, ok := tc.rechecks[topic]
	if !ok {
		tc.knownMu.RLock()
		info, known := tc.known[topic]
		tc.knownMu.RUnlock()
		if known && time.Since(info.read) < compactedRecheck {
			tc.recheckMu.Unlock()
			return info, nil
		}
		if tc.rechecks == nil {
			tc.rechecks = map[string]*recheck{}
		}
		r = &recheck{done: make(chan struct{})}
		tc.rechecks[topic] = r
	}
	tc.recheckMu.Unlock()
	if !ok {
		r.info, r.err = tc.lookup(dl, topic, timeout)
		tc.recheckMu.Lock()
		delete(tc.rechecks, topic)
		tc.recheckMu.Unlock()
		close(r.done)
		return r.info, r.err
	}
	ctx, cancel := dl, context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(dl, timeout)
	}
	defer cancel()
	select {
	case <-r.done:
		return r.info, r.err
	case <-ctx.Done():
		return topicInfo{}, ctx.Err()
	}
}

// keylessCompacted is the reason a keyless record to a compacted topic is
// refused.
func keylessCompacted(topic string) string {
	return "topic " + topic + " is compacted (cleanup.policy compact): Kafka refuses a record without a key, and with it the records sent with it"
}

// recheck has topic's configuration read again at its next record, once
// what was read of it is older than compactedRecheck: Kafka refused its
// records as invalid (INVALID_RECORD), which it does for a keyless record
// when the topic was made compacted since.
func (tc *topicCheck) recheck(topic string) {
	tc.knownMu.Lock()
	if info, ok := tc.known[topic]; ok && time.Since(info.read) >= compactedRecheck {
		delete(tc.known, topic)
	}
	tc.knownMu.Unlock()
}

// unverified is what kproxy assumes of a topic no broker could tell it
// about: max_message_bytes.
func (tc *topicCheck) unverified(name []byte) topicInfo {
	return topicInfo{name: string(name), maxBytes: tc.maxBytes}
}

// unreachable tells whether err, from exists, says that no broker answered
// (rather than a broker's refusal of the topic: a *kerr.Error).
func unreachable(err error) bool {
	var ke *kerr.Error
	return !errors.As(err, &ke)
}

func (tc *topicCheck) ask(ctx context.Context, topic string) error {
	tc.mu.Lock()
	until, ok := tc.missing[topic]
	tc.mu.Unlock()
	if ok && time.Now().Before(until) {
		return kerr.UnknownTopicOrPartition
	}
	_, err := tc.metadata(ctx, topic, tc.autoCreate)
	tc.mu.Lock()
	defer tc.mu.Unlock()
	switch {
	case err == kerr.UnknownTopicOrPartition:
		if len(tc.missing) >= maxMissing {
			clear(tc.missing)
		}
		tc.missing[topic] = time.Now().Add(missingTTL)
	case ok:
		delete(tc.missing, topic)
	}
	return err
}

// metadata asks a broker about topic alone (creating it when create is
// set and the brokers allow it), until ctx ends; it returns the topic's
// id (zero when the broker does not give ids).
func (tc *topicCheck) metadata(ctx context.Context, topic string, create bool) ([16]byte, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = create
	resp, err := req.RequestWith(ctx, tc.client)
	if err != nil {
		return [16]byte{}, fmt.Errorf("metadata of topic %s: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		switch err := kerr.ErrorForCode(t.ErrorCode); err {
		case nil, kerr.LeaderNotAvailable:
			// LEADER_NOT_AVAILABLE: just created, or electing; kgo waits
			// for the leader within the record's deadline.
			return t.TopicID, nil
		default:
			return [16]byte{}, err
		}
	}
	return [16]byte{}, fmt.Errorf("metadata of topic %s: not in the brokers' answer", topic)
}

// purgeHoldOff is how long after purging a topic from a client further
// UNKNOWN_TOPIC_ID refusals of it are taken for the same stale id (records
// failed while the purge ran) rather than a new one.
const purgeHoldOff = time.Second

// topicPurges purges topics whose id a kgo client holds stale from that
// client, one purge per client and topic at a time; Close stops them
// (stop), closes the clients, then waits for them (wait).
type topicPurges struct {
	log     *slog.Logger
	mu      sync.Mutex
	stopped bool
	last    map[purgeKey]purgeState
	wg      sync.WaitGroup

	// held is, per idempotent client and topic, the id
	// the brokers gave for the topic right after the client's first
	// record of it (since its last purge of it) was written: the id the
	// client holds (kgo keeps the one it fetched first). Read on every
	// such record written (wrote), written rarely.
	heldMu sync.RWMutex
	held   map[purgeKey]*heldID
}

// heldID is a client's id for a topic (topicPurges.held), once done is
// closed; zero when the brokers did not give it.
type heldID struct {
	done chan struct{}
	id   [16]byte
}

// purgeState is a purge under way (ended zero) or ended at ended.
type purgeState struct {
	ended time.Time
}

type purgeKey struct {
	cl    *kgo.Client
	topic string
}

// start purges topic from cl in the background, unless a purge of it is
// under way or ended within purgeHoldOff, or kproxy is stopping.
// PurgeTopicsFromProducing waits for the client's metadata loop, and kgo
// runs promises on its own goroutine: it is never called from a promise.
func (tp *topicPurges) start(cl *kgo.Client, topic string) {
	tp.startAfter(cl, topic, purgeStaleID, nil)
}

// wrote notes that cl, the idempotent client (a transactional one is
// never purged: txnProducer.stale), had a record of topic written: the
// first time since cl was last purged of topic, the brokers are asked for
// the topic's id in the background, within timeout (startStaleID compares
// it).
func (tp *topicPurges) wrote(cl *kgo.Client, topic string, check *topicCheck, timeout time.Duration) {
	k := purgeKey{cl, topic}
	tp.heldMu.RLock()
	_, ok := tp.held[k]
	tp.heldMu.RUnlock()
	if ok {
		return
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.stopped {
		return
	}
	tp.heldMu.Lock()
	if _, ok := tp.held[k]; ok {
		tp.heldMu.Unlock()
		return
	}
	if tp.held == nil {
		tp.held = map[purgeKey]*heldID{}
	}
	h := &heldID{done: make(chan struct{})}
	tp.held[k] = h
	tp.heldMu.Unlock()
	tp.wg.Go(func() {
		defer close(h.done)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		h.id, _ = check.metadata(ctx, topic, false)
	})
}

// forgetClient drops what is held of cl, closed for good.
func (tp *topicPurges) forgetClient(cl *kgo.Client) {
	tp.heldMu.Lock()
	defer tp.heldMu.Unlock()
	for k := range tp.held {
		if k.cl == cl {
			delete(tp.held, k)
		}
	}
}

// startStaleID purges topic from cl, the idempotent client, after an
// UNKNOWN_TOPIC_ID refusal, unless the brokers, asked within timeout,
// still give the topic the id they gave
// right after cl's first record of it was written (wrote): cl holds that
// id, and the refusal came from a broker whose metadata lags
// (UNKNOWN_TOPIC_ID is retriable). A purge fails the records cl holds of
// topic and starts its partitions again at sequence number 0, under a new
// producer epoch (kgo as patched: under the same one, the broker took the
// next batch for a retry of one it wrote and answered success with that
// batch's offset, without writing it); batches of other topics retried
// across the new epoch may be written twice. Nothing held (no record of cl written since its last
// purge of topic): purged. The id not learnt: not purged now, and
// forgotten, so that a refusal after purgeHoldOff purges.
func (tp *topicPurges) startStaleID(cl *kgo.Client, topic string, check *topicCheck, timeout time.Duration) {
	k := purgeKey{cl, topic}
	tp.startAfter(cl, topic, purgeStaleID, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		tp.heldMu.RLock()
		h := tp.held[k]
		tp.heldMu.RUnlock()
		drop := func() {
			tp.heldMu.Lock()
			if tp.held[k] == h {
				delete(tp.held, k)
			}
			tp.heldMu.Unlock()
		}
		if h == nil {
			return true
		}
		select {
		case <-h.done:
		case <-ctx.Done():
		}
		select {
		case <-h.done:
		default:
			drop()
			return false
		}
		if h.id == ([16]byte{}) {
			drop()
			return false
		}
		cur, err := check.metadata(ctx, topic, false)
		if err == nil && cur == h.id {
			tp.log.Warn("kafka refused the topic's id, which the brokers still give for it (a broker's metadata lags); "+
				"the topic is not purged from the client", "topic", topic)
			return false
		}
		drop() // the next record written after the purge fetches the id again
		return true
	})
}

// Why a topic is purged, as logged.
const (
	purgeStaleID = "kafka does not know the topic by the id kproxy's client has for it (deleted, perhaps re-created); " +
		"purging it from the client, its next record fetches the topic's metadata again"
	purgeTooLarge = "kafka refused a batch of the topic as too large (its max.message.bytes was lowered); " +
		"purging it from the client, so that its batches are built anew to the limit read again"
)

// startAfter is start, logging why (purgeStaleID, purgeTooLarge), the
// purge running before (when not nil) first, and not at all when before
// returns false.
func (tp *topicPurges) startAfter(cl *kgo.Client, topic, why string, before func() bool) {
	k := purgeKey{cl, topic}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.stopped {
		return
	}
	if st, ok := tp.last[k]; ok && (st.ended.IsZero() || time.Since(st.ended) < purgeHoldOff) {
		return
	}
	if tp.last == nil {
		tp.last = map[purgeKey]purgeState{}
	}
	tp.last[k] = purgeState{}
	tp.wg.Go(func() {
		if before == nil || before() {
			tp.log.Warn(why, "topic", topic)
			// Records of the topic still buffered fail (kgo's "topic
			// purged while buffered"): they were sent with the stale
			// id, or would be.
			cl.PurgeTopicsFromProducing(topic)
		}
		ended := time.Now()
		tp.mu.Lock()
		tp.last[k] = purgeState{ended: ended}
		tp.mu.Unlock()
		// Past its hold-off an ended purge decides nothing: forgotten
		// then, whether or not another purge starts, so that a retired
		// transactional client is not kept by it.
		time.AfterFunc(purgeHoldOff, func() {
			tp.mu.Lock()
			if st, ok := tp.last[k]; ok && st.ended.Equal(ended) {
				delete(tp.last, k)
			}
			tp.mu.Unlock()
		})
	})
}

// stop stops new purges.
func (tp *topicPurges) stop() {
	tp.mu.Lock()
	tp.stopped = true
	tp.mu.Unlock()
}

// wait waits for the purges under way (after stop; once the clients are
// closed, none waits for a metadata loop any more).
func (tp *topicPurges) wait() { tp.wg.Wait() }
