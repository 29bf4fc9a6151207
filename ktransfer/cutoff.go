package ktransfer

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A process that can reach ZooKeeper but no Kafka broker (its route to
// the brokers gone, a firewall change on its host) would keep its
// partitions, and be given more, while it cannot read a record of them:
// its ZooKeeper session lives, and the spares only take over from the
// dead. Each of its requests to the brokers is watched instead: when none
// has been answered for kafka_cutoff_ms since the oldest one made after
// the last answer, every module deregisters and hands its partitions over
// (reconcile), /health answers 503, and the module registers again once a
// broker answers. A process whose modules hold no partition asks the
// brokers only for its topics' partitions, every partitionPoll, answered
// within kafkaTimeout: kafka_cutoff_ms is at least their sum
// (kafkaCutoffLeast), so such a process is not taken for cut off, even
// after the fetch of a partition it released was cancelled unanswered.

// kafkaHeard is the hook, on every Kafka client of the process, that
// keeps Transfer.kafkaWaiting.
type kafkaHeard struct{ t *Transfer }

var (
	_ kgo.HookBrokerConnect = kafkaHeard{}
	_ kgo.HookBrokerWrite   = kafkaHeard{}
	_ kgo.HookBrokerRead    = kafkaHeard{}
)

// OnBrokerConnect: a connection that failed is a request not answered.
func (h kafkaHeard) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil && !gaveUp(err) {
		h.t.kafkaAsked()
	}
}

// OnBrokerWrite: a request made (written or not).
func (h kafkaHeard) OnBrokerWrite(_ kgo.BrokerMetadata, _ int16, _ int, _, _ time.Duration, err error) {
	if !gaveUp(err) {
		h.t.kafkaAsked()
	}
}

// OnBrokerRead: a broker answered.
func (h kafkaHeard) OnBrokerRead(_ kgo.BrokerMetadata, _ int16, _ int, _, _ time.Duration, err error) {
	if err == nil && h.t.kafkaWaiting.Load() != 0 {
		h.t.kafkaWaiting.Store(0)
	}
}

// gaveUp: a request the process gave up itself (a fetch cancelled as a
// partition is released, a client closed) tells nothing of the brokers. Its
// write, when made, still counts as a request not answered: a broker that
// answers answers the next one.
func gaveUp(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed)
}

// kafkaAsked notes a request made, when none is waiting.
func (t *Transfer) kafkaAsked() {
	if t.kafkaWaiting.Load() == 0 {
		t.kafkaWaiting.CompareAndSwap(0, t.now()+1)
	}
}

// kafkaInDoubt reports whether no broker answered for half
// kafka_cutoff_ms since the oldest request made after the last answer.
func (t *Transfer) kafkaInDoubt() (time.Duration, bool) {
	waited, _ := t.kafkaCutOff()
	return waited, t.cfg.KafkaCutoffMs != 0 && waited >= time.Duration(t.cfg.KafkaCutoffMs)*time.Millisecond/2
}

// untilCutOff is how long until the process is cut off if no broker
// answers meanwhile: 0 when it is, or when no request waits (or the
// cut-off is off).
func (t *Transfer) untilCutOff() time.Duration {
	waited, cut := t.kafkaCutOff()
	if cut || waited == 0 {
		return 0
	}
	return time.Duration(t.cfg.KafkaCutoffMs)*time.Millisecond - waited
}

// kafkaCutOff reports whether no broker answered for kafka_cutoff_ms
// since the oldest request made after the last answer, and for how long.
func (t *Transfer) kafkaCutOff() (time.Duration, bool) {
	since := t.kafkaWaiting.Load()
	if since == 0 || t.cfg.KafkaCutoffMs == 0 {
		return 0, false
	}
	waited := time.Duration(t.now() - (since - 1))
	return waited, waited >= time.Duration(t.cfg.KafkaCutoffMs)*time.Millisecond
}
