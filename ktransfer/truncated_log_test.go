package ktransfer_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestTruncatedLogIsReadAgainFromItsNewEnd: the partition's leader moves,
// and the new leader's log ends below what the module has read (an unclean
// leader election: the records from there on were lost with the old
// leader, and their offsets are given to the records written next). The
// Kafka client reports the loss and reads on from the new log end. The
// records it then returns at offsets the module had read past are records
// the module never saw, and are pushed; they were skipped as "already
// dispatched", unpushed and unreported.
func TestTruncatedLogIsReadAgainFromItsNewEnd(t *testing.T) {
	const cut = 5
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", numbered(0, 10, keyEach))
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the 10 records pushed", 10*time.Second, func() bool { return len(b.got()) == 10 })

	// The new leader answers the client's check of its epoch with a log end
	// below the module's position, once.
	truncated := e.logEndsAtOnce(cut)
	e.moveLeader(t, "t", 0)
	waitFor(t, "the new leader's log end asked", 10*time.Second, func() bool { return truncated.Load() > 0 })
	// From the new end on, kfake returns the records it has: in the story
	// told here, records written after the truncation.
	waitFor(t, "the records at offsets 5 to 9 after the truncation pushed", 10*time.Second, func() bool {
		return pushedTwice(b, cut, 10)
	})
	e.committedAtEnd(t, "m", "t") // the offset stored below the committed one moved on to the end
}

// TestLeaderWithoutEpochHistoryIsReadAgain: the partition's leader moves to
// a replica that has no record of the leader epoch the module read in (an
// unclean election to a replica without history: UNDEFINED_EPOCH_OFFSET).
// The Kafka client, without reporting an error, goes back to the first
// record stamped at or after the last one read: in its words, it re-reads
// what replaced the module's records rather than skipping them. Those
// records, at offsets the module had read past, are pushed; they were
// skipped as already dispatched.
func TestLeaderWithoutEpochHistoryIsReadAgain(t *testing.T) {
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", numbered(0, 10, keyEach))
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the 10 records pushed", 10*time.Second, func() bool { return len(b.got()) == 10 })

	undefined := e.logEndsAtOnce(-1)
	e.moveLeader(t, "t", 0)
	waitFor(t, "the new leader's epoch history asked", 10*time.Second, func() bool { return undefined.Load() > 0 })
	// The last record read is at offset 9: the client goes back at least
	// to it, to a record that in the story told here replaced it.
	waitFor(t, "the record at offset 9 after the new leader pushed", 10*time.Second, func() bool { return pushedTwice(b, 9, 10) })
	e.committedAtEnd(t, "m", "t")
}

// TestTruncatedLogRestartOffsetSurvivesAStop: the leader's log ends below
// the committed offset (an unclean election), while a record the module
// read before is still retried. The partition restarts at the new log end
// only once that record is done; a process stopping meanwhile (a shutdown,
// a hand-over) must leave the new log end stored, not the committed offset
// above it: the next owner would start there and skip the records written
// at the offsets Kafka gave again, never pushing them.
func TestTruncatedLogRestartOffsetSurvivesAStop(t *testing.T) {
	const cut = 5
	e, b, r, admin, refuse := startRetryingLast(t)
	e.logEndsAtOnce(cut)
	e.moveLeader(t, "t", 0)
	waitTruncationSeen(t, admin)
	// The next owner pushes them.
	stopLeavesNewEnd(t, e, b, r, refuse, cut)
}

// TestTruncatedLogWhileWaitingOnARestart: a broker answers a fetch
// OFFSET_OUT_OF_RANGE for an offset Kafka has, and after that (a record
// read before is still retried) the leader's log is found to end below it
// (an unclean election: kgo reports the loss). The lower position must
// win: the records written at the offsets Kafka gave again are pushed, not
// skipped by a restart at the offset of the first answer. The partition
// used to wait there for the retried record; it now reads on at once, with
// the leader epoch of the last record read, by which kgo tells the loss.
func TestTruncatedLogWhileWaitingOnARestart(t *testing.T) {
	const cut = 5
	e, b, _, refuse := truncatedWhileWaiting(t, cut)
	refuse.Store(false)
	// From the new end on, kfake returns the records it has: in the story
	// told here, records written after the truncation.
	waitFor(t, "the records at offsets 5 to 8 after the truncation pushed", 10*time.Second, func() bool {
		return pushedTwice(b, cut, 9)
	})
	e.committedAtEnd(t, "m", "t")
}

// TestTruncatedLogWhileWaitingOnARestartIsStoredAtOnce: as above, and the
// record still retried keeps the first restart waiting. The new log end
// is stored at once all the same, as for a truncation reported while the
// partition reads: a process stopping meanwhile leaves it to the next
// owner, which pushes the records written at those offsets.
func TestTruncatedLogWhileWaitingOnARestartIsStoredAtOnce(t *testing.T) {
	const cut = 5
	e, b, r, refuse := truncatedWhileWaiting(t, cut)
	waitFor(t, "the new log end stored", 10*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == strconv.Itoa(cut)
	})
	stopLeavesNewEnd(t, e, b, r, refuse, cut)
}

// truncatedWhileWaiting sets the scene of the tests above: 10 records,
// offsets 0 to 8 pushed, 9 refused while refuse holds; a fetch from 10
// answered OFFSET_OUT_OF_RANGE, then the leader moved to one whose log
// ends at cut, seen by the module.
func truncatedWhileWaiting(t *testing.T, cut int64) (*env, *backend, *running, *atomic.Bool) {
	t.Helper()
	e, b, r, admin, refuse := startRetryingLast(t)
	// One fetch from offset 10 is answered OFFSET_OUT_OF_RANGE; the next
	// fetch from there shows that answer was taken by the module.
	_, fetchedAfter := e.outOfRangeOnce(10, nil)
	waitFor(t, "the out-of-range answer taken", 10*time.Second, fetchedAfter.Load)

	e.logEndsAtOnce(cut)
	e.moveLeader(t, "t", 0)
	waitTruncationSeen(t, admin)
	return e, b, r, refuse
}

// TestTruncatedLogNeverStoresBelowTheLogStart: the leader's log ends below
// the records read (an unclean election) while a record read long before
// is still retried, and retention has passed that record meanwhile: the
// committed offset is below the log start. The restart stores the lower of
// the new log end and the committed offset, but not below the log start:
// an offset Kafka no longer has, left by a stop meanwhile, had the next
// owner apply offset_out_of_range again (newest: every record written
// since skipped).
func TestTruncatedLogNeverStoresBelowTheLogStart(t *testing.T) {
	e, r, admin := startRetryingThird(t)
	deleteRecordsBefore(t, e, 5) // retention passes record 3
	truncatedKeepsLogStart(t, e, r, admin)
}

// TestTruncatedLogWhileWaitingNeverStoresBelowTheLogStart: as above, but
// the truncation is reported while the partition waits on another restart
// (a passing out-of-range answer, its log start read then), and retention
// passed the retried record after that reading. The log start read before
// is stale: the restart must ask again, not store the committed offset
// below the log start.
func TestTruncatedLogWhileWaitingNeverStoresBelowTheLogStart(t *testing.T) {
	e, r, admin := startRetryingThird(t)
	injected, _ := e.outOfRangeOnce(10, nil)
	// The restart asks for the log start, then for the newest offset: once
	// the second is asked, the first (0) was answered.
	var newestAsked atomic.Bool
	e.kafka.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		for _, rt := range req.(*kmsg.ListOffsetsRequest).Topics {
			for _, rp := range rt.Partitions {
				if injected.Load() && rp.Timestamp == -1 {
					newestAsked.Store(true)
				}
			}
		}
		return nil, nil, false
	})
	waitFor(t, "the restart's range asked", 10*time.Second, newestAsked.Load)
	deleteRecordsBefore(t, e, 5) // retention passes record 3 after the log start was read
	truncatedKeepsLogStart(t, e, r, admin)
}

// startRetryingThird writes 10 records (each its own key) to the one
// partition of topic t on a three-broker cluster and runs module m
// (offset_out_of_range newest, an admin listener) pushing them to a
// backend that refuses offset 3; it returns once 3 is committed and record
// 3 retried.
func startRetryingThird(t *testing.T) (*env, *running, string) {
	t.Helper()
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", numbered(0, 10, keyEach))
	b, refuse := refusingOffset(t, 3)
	t.Cleanup(func() { refuse.Store(false) })
	m := module("m", "t", b.URL)
	m.OffsetOutOfRange = "newest"
	r, admin := e.startAdmin(t, 0, m)
	waitFor(t, "3 committed, record 3 retried", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "3" })
	return e, r, admin
}

// truncatedKeepsLogStart has the leader's log end at 7 (an unclean
// election, seen by the module) with retention past record 3 (the log
// starting at 5): the log start must be stored while record 3 is retried,
// and stay stored after a stop.
func truncatedKeepsLogStart(t *testing.T, e *env, r *running, admin string) {
	t.Helper()
	e.logEndsAtOnce(7)
	e.moveLeader(t, "t", 0)
	waitTruncationSeen(t, admin)
	waitFor(t, "the log start stored while record 3 is retried", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "5" })
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if s := e.storedOffset(t, "m", "t", 0); s != "5" {
		t.Errorf("stored offset after the stop %s, want 5: the log start (the committed offset 3 is below it)", s)
	}
}
