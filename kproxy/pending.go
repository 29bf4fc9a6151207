package kproxy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// pending is one record on its way to Kafka, pooled: the request's state
// from the handler to kgo's promise and back.
type pending struct {
	rec kgo.Record // Context is the pending itself, for the promise
	buf []byte     // the record value: a copy of the request body
	key []byte
	// headers are the record's headers, their values held in hbuf.
	headers []kgo.RecordHeader
	hbuf    []byte
	srv     *Server
	acks    int
	cl      *kgo.Client
	tr      *tracer
	note    sendNote        // tr's counts when the record was handed to kgo
	ctx     context.Context // the record's deadline (shared: see deadlines)
	// order is its Context field's Done and Err (sendOrder); nil: never
	// done. Atomic: kgo may call Done while the pending serves a later
	// record (a goroutine waiting on an unknown topic's first record).
	order atomic.Pointer[cutContext]

	// With the spool: the gate the record passed (gate nil: spool off,
	// acks=0), its generation (nil: spool=0) and its copy in the spool
	// when the gate's flip took it.
	gateRec

	state atomic.Int32  // waiting, finished or abandoned
	done  chan struct{} // the promise's signal to the handler (cap 1)
	err   error         // the outcome, set before done
	trace sendTrace
}

// pending states: the handler waits; the promise finished it (err and
// trace are set); the handler answered 504 and left it to the promise.
const (
	waiting int32 = iota
	finished
	abandoned
)

var pendingPool = sync.Pool{New: func() any { return &pending{done: make(chan struct{}, 1)} }}

// A pending is the Context of its record only to find it again in the
// promise (one function for every record: no closure per request); it is
// never done. The record's deadline is the context given to Produce.
func (*pending) Deadline() (time.Time, bool) { return time.Time{}, false }
func (p *pending) Done() <-chan struct{}     { return p.order.Load().done() }
func (p *pending) Err() error                { return p.order.Load().err() }
func (*pending) Value(any) any               { return nil }

func (p *pending) release() {
	if cap(p.buf) > maxPooledBody {
		p.buf = nil
	}
	if cap(p.key) > maxPooledBody {
		p.key = nil
	}
	if cap(p.hbuf) > maxPooledBody {
		p.hbuf = nil
	}
	clear(p.headers) // their keys and values
	p.headers = p.headers[:0]
	p.rec = kgo.Record{}
	p.srv, p.cl, p.tr, p.ctx, p.err = nil, nil, nil, nil, nil
	p.order.Store(nil)
	p.gateRec = gateRec{}
	pendingPool.Put(p)
}

// onProduced is every record's promise.
func onProduced(r *kgo.Record, err error) {
	p := r.Context.(*pending)
	p.srv.produced(p, err, p.tr.since(p.note))
}

// produced takes a record's outcome: an acks=0 record is counted (written
// or lost), others are handed to the waiting handler. A refusal may say
// that what kproxy knows of the topic is out of date (refusedTopic).
func (s *Server) produced(p *pending, err error, trace sendTrace) {
	if err != nil {
		s.refusedTopic(p.cl, p.rec.Topic, err)
	} else if p.cl == s.prod.all {
		s.purges.wrote(p.cl, p.rec.Topic, s.check, s.produceTimeout)
	}
	if p.acks == 0 {
		s.acks0Done(&p.rec, err, trace)
		p.release()
		return
	}
	p.err, p.trace = err, trace
	taken := false
	if p.gate != nil {
		taken = s.spool.settle(&p.gateRec) // taken by a flip: p.item is the answer
	}
	if p.state.CompareAndSwap(waiting, finished) {
		p.done <- struct{}{}
		return
	}
	if err == nil && !taken {
		// Answered 504 at its deadline and accepted afterwards: the
		// acks=-1 client lets a produce request it sent finish.
		s.metrics.records[p.acks].Inc()
	}
	p.release() // the handler answered 504 and left
}

// refusedTopic learns from a record's refusal by cl what changed of its
// topic:
//   - MESSAGE_TOO_LARGE: the topic's max.message.bytes is asked again: it
//     was lowered since kproxy read it (batches are built to fit it). kgo
//     sizes a partition's batches once, when it learns of the partition:
//     the topic is purged from the acks=1 client once the new limit is
//     known, so that its batches are built anew (not from the idempotent
//     client: a purge fails the records it holds of the topic, which a
//     retry would write, and restarts the topic's sequence numbers, for
//     which kgo as patched bumps the producer epoch; unpatched, the broker
//     took the next batches for retries of written ones and dropped them:
//     TestIdempotentPurgeThenRecordWritten). A transactional
//     client is retired when its batch is aborted (txnProducer.stale).
//   - UNKNOWN_TOPIC_ID: the brokers no longer know the topic by the id cl
//     has for it: it was deleted, perhaps re-created under a new id. kgo
//     keeps the id until the topic is purged from the client (produce v13
//     names topics by id), so every later record would be refused alike:
//     the topic is forgotten (the next request looks it up: 404 if it is
//     gone) and purged from cl, whose next record of it fetches the new id.
//     From the idempotent client only when the brokers no longer give the
//     id they gave right after cl's first record of the topic was written
//     (topicPurges.startStaleID): the refusal is retriable, and a purge
//     fails the records held and bumps the epoch. A transactional client is never purged: it
//     is retired when its batch is aborted (txnProducer.stale).
func (s *Server) refusedTopic(cl *kgo.Client, topic string, err error) {
	switch {
	case errors.Is(err, kerr.MessageTooLarge):
		s.check.stale(topic)
		// Each client that is not idempotent (the acks=0 one of the
		// spool's too) is purged when its own batch is refused: the other
		// may have learnt the partitions after the new limit was read, and
		// a purge fails the records it holds of the topic.
		if s.prod.notIdempotent(cl) {
			s.purges.startAfter(cl, topic, purgeTooLarge, func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), s.produceTimeout)
				defer cancel()
				s.check.exists(ctx, []byte(topic), 0) // the new limit, before kgo learns of the partitions again
				return true
			})
		} else if cl != s.prod.all && s.txns != nil {
			// A transactional client, retired when its batch is aborted
			// (txnProducer.stale). Not the idempotent one (above).
			s.txns.markStale(cl, &errStaleLimit)
		}
	case errors.Is(err, kerr.InvalidRecord):
		// Perhaps a keyless record to a topic made compacted since its
		// configuration was read: read again, the next keyless one is
		// refused before it is sent (refusesKeyless).
		s.check.recheck(topic)
	case errors.Is(err, kerr.UnknownTopicID):
		s.check.forget(topic)
		switch {
		case s.prod.notIdempotent(cl):
			// The one refused (see MESSAGE_TOO_LARGE): the other may have
			// the new id already.
			s.purges.start(cl, topic)
		case cl == s.prod.all:
			s.purges.startStaleID(cl, topic, s.check, s.produceTimeout)
		case s.txns != nil:
			// A transactional client: replaced when its batch is
			// aborted, never purged (txnProducer.stale); one retired
			// already is closed, and nothing is left to do.
			s.txns.markStale(cl, &errStaleTopicID)
		}
	}
}

// acks0Done counts an acks=0 record, answered already, as written or lost
// (given up: DESIGN's count of the records finally refused), a lost one
// that may have been written as unconfirmed too, and gives back its place
// among the acks=0 records being delivered: last, once a loss is logged,
// since Close waits for that place to log what the sampled lines hold
// back and lets the process end.
func (s *Server) acks0Done(r *kgo.Record, err error, trace sendTrace) {
	defer s.acks0Out.Add(-1)
	if err != nil {
		if errors.Is(err, kerr.UnknownTopicOrPartition) {
			// The client's metadata no longer has the topic (deleted):
			// kproxy forgets it, so that the next request asks the
			// brokers and is answered 404 if it is gone. Records at
			// acks 1 and -1 are answered 404 with this error; an acks=0
			// record was answered before it, and nothing else would
			// tell the clients, whose records would be lost one by one.
			s.check.forget(r.Topic)
		}
		code, _ := produceStatus(err, trace)
		s.metrics.acks0Lost.Inc()
		if code == 504 {
			// A request that may have carried it got no answer, or was
			// still out: it may be in Kafka all the same.
			s.metrics.acks0Unconfirmed.Inc()
		}
		s.acks0Log.warn("acks=0 record answered 200 and not delivered", "topic", r.Topic,
			"partition", r.Partition, "may_be_written", code == 504, "err", err)
		return
	}
	s.metrics.records[0].Inc()
}
