package kproxy

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Reasons shared by several answers.
const (
	mayBeWritten = "; the record may have been written"
	notWritten   = "; the record was not written"
)

// produceStatus decides the answer to a record kgo failed with err, given
// what its client did meanwhile (t). The rule of DESIGN.md: 503 only when
// the record surely is not in Kafka, 504 when it may be.
//
// kgo retries the retriable errors itself until the record's deadline, so
// err is the last of possibly several attempts. Each attempt either never
// left (no produce request written), was answered (a refusal is definite:
// nothing of that batch was appended), or lost its answer (written, then
// the connection broke or the request was cancelled: it may have been
// appended). A record is "surely not written" only when every attempt was
// of the first two kinds; t tells which: with no produce request written
// (at acks=1, no batch built into one) since the record was buffered it
// never left, and with no written request unanswered every attempt that
// left was answered.
//
// Answers that kgo handles without giving up cannot be seen here:
// REQUEST_TIMED_OUT and NOT_ENOUGH_REPLICAS_AFTER_APPEND (appended, not
// acknowledged) make kgo retry until the batch is acknowledged or refused
// outright, never failing it by its deadline. The first comes only after
// produce_timeout_ms (the broker waits ProduceRequestTimeout, set to it),
// when the client was answered 504 already; the second, rare, followed by
// a definite refusal would be answered with the refusal's status. At
// acks=-1 the broker deduplicates the retry, so that refusal is all but
// impossible; at acks=1 brokers send neither error.
// failedWithEarlier says whether a record failed by a deadline was failed
// with an earlier record of its partition, its own deadline (own) not yet
// passed: Kafka's client fails every record queued behind one whose
// deadline passed before it was sent (their order would break otherwise),
// whatever time they had left. The earlier record's deadline is its
// context's, or kgo's RecordDeliveryTimeout (produce_timeout_ms from when
// kgo took it), whichever kgo sees first: the records behind fail with
// ErrRecordTimeout then. A record's own delivery timeout starts after its
// arrival, so it has not passed while own has not.
func failedWithEarlier(err error, own context.Context) bool {
	return (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrRecordTimeout)) && own != nil && own.Err() == nil
}

// earlierReason is the reason of a record failed by another record's
// deadline and not sent (503), its own deadline (own) not passed: one
// queued before it (failedWithEarlier), or one handed over after it whose
// deadline came first (sendOrder's cut); or by its topic's flip to the
// spool (flipReason).
//
// gated tells that the record passed its topic's spool gate (a spool=0
// record: the others a flip takes are spooled).
func earlierReason(err error, own context.Context, gated bool) (string, bool) {
	switch {
	case failedWithEarlier(err, own):
		return withEarlierReason, true
	case errors.Is(err, errCut) && own != nil && own.Err() == nil:
		return cutReason, true
	case gated && errors.Is(err, context.Canceled) && own != nil && own.Err() == nil:
		// The one other context a record queued before it in its
		// partition can carry: its gate's generation, which its topic's
		// flip to the spool cancelled.
		return flipReason, true
	}
	return "", false
}

// flipReason is the reason of a record failed by its topic's flip to the
// spool (earlierReason) and not sent (503).
const flipReason = "kafka did not take an earlier record of its partition within spool_after_ms, which kproxy spooled, and kafka's client failed the records queued behind it with it (while the topic has records in the spool, a spool=0 record is refused)" + notWritten

// cutReason is the reason of a record failed by sendOrder's cut.
const cutReason = "kafka did not take the record before the deadline of a record queued with it (handed to kafka's client after it, arrived before it), and kafka's client failed them together" + notWritten

// withEarlierReason is the reason of a record failedWithEarlier and not
// sent (503).
const withEarlierReason = "kafka did not take an earlier record of its partition within produce_timeout_ms, and kafka's client failed the records queued behind it with it" + notWritten

func produceStatus(err error, t sendTrace) (int, string) {
	if t.lost {
		// A request that may have carried the record was written and its
		// answer lost: whatever came after, it may be in Kafka.
		return 504, "kafka did not answer a request carrying the record" + mayBeWritten
	}
	if ke := (*kerr.Error)(nil); t.pipelined && t.wrote && errors.As(err, &ke) {
		// kgo fails a partition's later batches with the error of a
		// batch the broker refused outright, before their own answers.
		// A pipelining client may have sent the record's batch behind the
		// refused one, and the broker may write it, or have written it
		// (kgo then ignores the success, with no hook to tell it): no
		// count of requests tells the record's own refusal from that.
		// The request may still be being written at the failure (t.wrote
		// counts the batch built into it: tracer.built).
		return 504, "kafka refused a batch of the record's partition (" + err.Error() + "), perhaps not the record's own" + mayBeWritten
	}
	if ke := (*kerr.Error)(nil); t.idempotent && t.rewrote && errors.As(err, &ke) && refusesRecords(ke) {
		// The idempotent client retries a batch the broker appended and
		// answered REQUEST_TIMED_OUT or NOT_ENOUGH_REPLICAS_AFTER_APPEND
		// (no hook shows those answers), and the broker validates a batch
		// (timestamps, keys of a topic made compacted meanwhile) before its
		// sequence numbers: the retry of a written batch can be refused as
		// invalid. A second produce request written since the record was
		// handed over may have been such a retry (as batchTooLargeStatus).
		return 504, "kafka refused the record's batch, or an earlier one of its partition (" + err.Error() + "), perhaps the retry of a batch it had written" + mayBeWritten
	}
	if ke := (*kerr.Error)(nil); errors.As(err, &ke) && refusesRecords(ke) {
		// A broker refuses a whole batch for one record it will not take
		// (nothing of the batch appended), and kgo fails every record of
		// the partition it holds with that refusal: those of the refused
		// batch, those queued behind it, and at acks=-1 those of a later
		// batch out at the same time (which the broker refuses as out of
		// sequence: not written either). kgo does not tell which batch a
		// record was in, so the refusal may be another record's: a 400
		// would tell the client to drop a good record. Not written, and
		// sent again it is written or refused again. (At acks=1 with
		// pipelining a later batch may be written: 504, above.) What kproxy
		// can tell of a record Kafka would refuse on its own merits — a
		// keyless record to a compacted topic — is refused before it is
		// sent, with 400.
		return 503, "kafka refused the record's batch, or an earlier one of its partition (" + err.Error() + "): perhaps for another record" + notWritten
	}
	if status, reason, ok := refusedTooLarge(err); ok {
		// The record's own request was answered: a refusal as too large
		// comes in no other way (never from a metadata answer), so other
		// requests out at the same time — a batch's records go to several
		// brokers at once — say nothing about it (unless the client
		// pipelines, above).
		return status, reason
	}
	if t.wrote && t.out {
		// A request written since the record was handed over has not come
		// to its end: at acks 0 and 1 (not idempotent) kgo fails a
		// partition's buffered records, in-flight ones included, on a
		// metadata error for the topic and by their deadline (at acks=-1
		// only records not sent yet: see newProducers); and it may run
		// this promise before the hook that counts a broken connection's
		// request as lost.
		return 504, "kafka did not acknowledge the record: " + err.Error() + mayBeWritten
	}
	if t.idempotent && t.wrote && givenUpAfterRefusals(err) {
		// At acks=-1 a leader appends a batch and waits for its replicas:
		// one that loses the leadership meanwhile answers
		// NOT_LEADER_OR_FOLLOWER (KAFKA_STORAGE_ERROR, …) for a batch its
		// follower, the new leader, may hold; kgo takes that answer for
		// "not written", retries, and fails the batch at its deadline, on
		// a metadata error after it (LEADER_NOT_AVAILABLE during the
		// election), or at the client's close
		// (TestAcksAllAfterNotLeaderAppendNot503). kgo does not tell
		// which request carried the record: any the client wrote since
		// it was handed over may have.
		why := "kafka did not acknowledge the record (" + err.Error() + ")"
		if errors.Is(err, kgo.ErrClientClosed) {
			why = "kproxy is shutting down before kafka acknowledged the record"
		}
		return 504, why + "; a leader may have refused its batch after taking it" + mayBeWritten
	}
	switch {
	case errors.Is(err, kgo.ErrClientClosed):
		// Closed while the record waited: it was not in a request whose
		// answer is missing or still awaited.
		return 503, "kproxy is shutting down" + notWritten
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries):
		// Past produce_timeout_ms, no request out: every attempt was
		// refused with a retriable error (leader moving, too few
		// replicas, …) or never left.
		return 503, "kafka did not take the record within produce_timeout_ms" + notWritten
	}
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		if !t.wrote {
			// Never left: a client-side failure (producer ID refused,
			// no broker reachable, …).
			return 503, "kafka unreachable: " + err.Error() + notWritten
		}
		// An error kgo does not describe further, after the record may
		// have left.
		return 504, "kafka error: " + err.Error() + mayBeWritten
	}
	switch ke {
	case kerr.UnknownTopicOrPartition:
		// The topic was deleted, or its partitions never appeared
		// (kgo gives up after UnknownTopicRetries).
		return 404, "unknown topic"
	case kerr.UnknownTopicID:
		// The brokers do not know the topic by the id the client had for
		// it: deleted, perhaps re-created. Not 404: the topic may exist
		// under a new id. kproxy looks it up again (refusedTopic): a
		// retry is written, or answered 404 if the topic is gone.
		return 503, "kafka no longer knows the topic by the id kproxy had for it (deleted, perhaps re-created); kproxy looks it up again" + notWritten
	case kerr.InvalidTopicException:
		return 400, "invalid topic name"
	case kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed, kerr.TransactionalIDAuthorizationFailed:
		// Writing (or, at acks=-1, idempotent writing) is not allowed to
		// kproxy's Kafka principal.
		return 403, "kafka denied writing to this topic"
	case kerr.NotLeaderForPartition, kerr.LeaderNotAvailable, kerr.BrokerNotAvailable,
		kerr.NotEnoughReplicas, kerr.KafkaStorageError, kerr.NetworkException:
		// A retriable refusal kgo stopped retrying (the last attempt was
		// answered; none lost its answer).
		return 503, "kafka partition unavailable: " + ke.Message + notWritten
	}
	// Any other refusal the broker answered (UNKNOWN_SERVER_ERROR, …):
	// the batch was not appended.
	return 502, "kafka error: " + ke.Message + notWritten
}

// givenUpAfterRefusals tells whether kgo gave a record up without a
// broker's verdict on its batch: its deadline or the client's close
// during the retries, or a retriable error it stopped retrying (a leader
// moving, too few replicas, a metadata error for the partition).
func givenUpAfterRefusals(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrRecordTimeout) ||
		errors.Is(err, kgo.ErrRecordRetries) || errors.Is(err, kgo.ErrClientClosed) {
		return true
	}
	switch {
	case errors.Is(err, kerr.NotLeaderForPartition), errors.Is(err, kerr.LeaderNotAvailable), errors.Is(err, kerr.BrokerNotAvailable),
		errors.Is(err, kerr.NotEnoughReplicas), errors.Is(err, kerr.KafkaStorageError), errors.Is(err, kerr.NetworkException):
		return true
	}
	return false
}

// refusesRecords tells whether ke is a refusal a broker answers for the
// records of a produce request on their merits, other than as too large
// (POLICY_VIOLATION: a policy of the broker's, or of a plugin, on the
// records' content).
func refusesRecords(ke *kerr.Error) bool {
	switch ke {
	case kerr.InvalidRecord, kerr.CorruptMessage, kerr.InvalidTimestamp, kerr.InvalidRequiredAcks, kerr.PolicyViolation:
		return true
	}
	return false
}

// refusedTooLarge gives the status of a refusal of a record's batch as too large,
// which a broker answers for the records of a produce request (or kgo, for
// a record too large, before sending it), and no metadata answer carries.
func refusedTooLarge(err error) (int, string, bool) {
	if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
		// The broker refused the batch holding the record: batches are
		// built to fit the topic's max.message.bytes as kproxy read it,
		// so it was lowered since (the topic is asked again).
		return 413, "kafka refused the record as too large", true
	}
	return 0, "", false
}
