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
	rec    kgo.Record // Context is the pending itself, for the promise
	buf    []byte     // the record value: a copy of the request body
	key    []byte
	srv    *Server
	acks   int
	cl     *kgo.Client
	tr     *tracer
	note   sendNote // tr's counts when the record was handed to kgo
	ctx    context.Context
	cancel context.CancelFunc
	resent bool // produced again alone after MESSAGE_TOO_LARGE

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
func (*pending) Done() <-chan struct{}       { return nil }
func (*pending) Err() error                  { return nil }
func (*pending) Value(any) any               { return nil }

func (p *pending) release() {
	p.cancel()
	if cap(p.buf) > maxPooledBody {
		p.buf = nil
	}
	if cap(p.key) > maxPooledBody {
		p.key = nil
	}
	p.rec = kgo.Record{}
	p.srv, p.cl, p.tr, p.ctx, p.cancel, p.err = nil, nil, nil, nil, nil, nil
	pendingPool.Put(p)
}

// onProduced is every record's promise.
func onProduced(r *kgo.Record, err error) {
	p := r.Context.(*pending)
	p.srv.produced(p, err, p.tr.since(p.note))
}

// produced takes a record's outcome: sent again alone after a
// MESSAGE_TOO_LARGE of its batch, counted when an acks=0 record is lost,
// else handed to the waiting handler.
func (s *Server) produced(p *pending, err error, trace sendTrace) {
	if err != nil && !p.resent && errors.Is(err, kerr.MessageTooLarge) && p.ctx.Err() == nil {
		if code, _ := produceStatus(err, trace); code == 413 && s.resend(p) {
			return
		}
	}
	if p.acks == 0 {
		if err != nil {
			code, _ := produceStatus(err, trace)
			s.metrics.acks0Lost.Inc()
			s.acks0Log.warn("acks=0 record answered 200 and not delivered", "topic", p.rec.Topic,
				"partition", p.rec.Partition, "may_be_written", code == 504, "err", err)
		}
		p.release()
		return
	}
	p.err, p.trace = err, trace
	if p.state.CompareAndSwap(waiting, finished) {
		p.done <- struct{}{}
		return
	}
	p.release() // the handler answered 504 and left
}

// resend queues p to be produced again on its own: kgo fails every record
// of a batch the broker refused as MESSAGE_TOO_LARGE (the topic's
// max.message.bytes below the batch, not below each record) and does not
// split it. One goroutine sends them one at a time, each waiting for its
// answer, so that they do not form a batch together again; each is sent
// once more at most, within its own deadline. It reports false when the
// queue is full or closed: p is then answered with its error.
func (s *Server) resend(p *pending) bool {
	s.resendMu.Lock()
	defer s.resendMu.Unlock()
	if s.resendClosed {
		return false
	}
	select {
	case s.resendq <- p:
		return true
	default:
		return false
	}
}

func (s *Server) resender() {
	defer close(s.resendDone)
	for p := range s.resendq {
		p.resent = true
		p.rec.Partition, p.rec.Timestamp, p.rec.Attrs = 0, time.Time{}, kgo.RecordAttrs{}
		p.note = p.tr.note()
		err := p.cl.ProduceSync(p.ctx, &p.rec).FirstErr()
		s.produced(p, err, p.tr.since(p.note))
	}
}

// stopResending sends what is queued and stops the resender, waiting
// until ctx ends.
func (s *Server) stopResending(ctx context.Context) {
	s.resendMu.Lock()
	if !s.resendClosed {
		s.resendClosed = true
		close(s.resendq)
	}
	s.resendMu.Unlock()
	select {
	case <-s.resendDone:
	case <-ctx.Done():
	}
}
