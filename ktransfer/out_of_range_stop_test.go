package ktransfer_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestOutOfRangeRestartOffsetSurvivesAStop attacks the promise that the
// offset offset_out_of_range chooses is where the partition goes on, for
// this process and for the next owner. The partition's read position falls
// below the log start while it runs (records deleted past it, as retention
// does), while a record read before is still retried. The restart offset
// waited for that record before it was stored: a process stopping
// meanwhile (a shutdown, a hand-over) left the committed offset, below the
// log start, and the next owner applied the policy again, later. Under
// newest it skipped every record written between the two, never pushing
// them.
func TestOutOfRangeRestartOffsetSurvivesAStop(t *testing.T) {
	for _, policy := range []string{"newest", "oldest"} {
		t.Run(policy, func(t *testing.T) {
			e, b, r, refuse := belowLogStartWhileRetrying(t, policy)
			if err := r.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := e.storedOffset(t, "m", "t", 0); got != "20" {
				t.Errorf("stored offset after the stop %s, want 20, where the partition was restarted", got)
			}
			refuse.Store(false)
			m := module("m", "t", b.URL)
			m.OffsetOutOfRange = policy
			e.start(t, m)
			waitFor(t, "the records at offsets 20 to 24 pushed by the next owner", 10*time.Second, func() bool {
				return pushedFrom(b, 20, 25) == 5
			})
			e.committedAtEnd(t, "m", "t")
		})
	}
}

// TestOutOfRangeRestartReadsOnOnceTheRecordsBeforeAreDone: as above, with
// no stop. The restart offset, stored at once, is read from once the
// record retried is done; its commit stores nothing (the offset stored is
// the restart's), and the records from there on are pushed once each and
// committed.
func TestOutOfRangeRestartReadsOnOnceTheRecordsBeforeAreDone(t *testing.T) {
	e, b, _, refuse := belowLogStartWhileRetrying(t, "newest")
	waitFor(t, "the restart offset stored", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "20" })
	if n := pushedFrom(b, 20, 25); n != 0 {
		t.Errorf("%d records after the restart offset pushed while a record before it is retried", n)
	}
	refuse.Store(false)
	waitFor(t, "the records at offsets 20 to 24 pushed", 10*time.Second, func() bool { return pushedFrom(b, 20, 25) == 5 })
	e.committedAtEnd(t, "m", "t")
	count := map[string]int{}
	for _, p := range b.got() {
		count[p.offset]++
	}
	for o := 20; o < 25; o++ {
		if n := count[strconv.Itoa(o)]; n != 1 {
			t.Errorf("record at offset %d pushed %d times, want once", o, n)
		}
	}
}

// belowLogStartWhileRetrying writes 10 records (each its own key) to the
// one partition of topic t and runs module m (offset_out_of_range:
// policy) pushing them to a backend that refuses offset 9 while refuse
// holds. Once offsets 0 to 8 are committed, 10 more records are written
// and the log is made to start at 20 (records deleted), so that the next
// fetch is answered OFFSET_OUT_OF_RANGE; once m has applied the policy
// (at 20 under both), records 20 to 24 are written. It returns then, 9
// still retried.
func belowLogStartWhileRetrying(t *testing.T, policy string) (e *env, b *backend, r *running, refuse *atomic.Bool) {
	t.Helper()
	e = newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", numbered(0, 10, keyEach))
	b, refuse = refusingOffset(t, 9) // retried until the stop, or the restart waits for it
	// Fetches past the first 10 records wait (the leader said to be
	// moving) until the next 10 are written and deleted; the first one
	// after that gets the answer Kafka then gives: OFFSET_OUT_OF_RANGE,
	// the log starting at 20.
	var deleted atomic.Bool
	injected, _ := e.outOfRangeOnce(10, func() bool { return !deleted.Load() })
	m := module("m", "t", b.URL)
	m.OffsetOutOfRange = policy
	r, admin := e.startAdmin(t, 0, m)
	waitFor(t, "offsets 0 to 8 pushed and committed, 9 retried", 10*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "9"
	})
	e.produce(t, "t", numbered(10, 20, keyEach))
	deleteRecordsBefore(t, e, 20)
	deleted.Store(true)
	waitFor(t, "the out-of-range answer given", 10*time.Second, injected.Load)
	waitFor(t, "the policy applied", 10*time.Second, func() bool {
		v := metricValue(t, admin, `ktransfer_offset_out_of_range_total{module="m"}`)
		return v != "" && v != "0"
	})
	// Written after the policy was applied.
	e.produce(t, "t", numbered(20, 25, keyEach))
	if got := metricValue(t, admin, `ktransfer_offset_out_of_range_total{module="m"}`); got != "1" {
		t.Errorf("ktransfer_offset_out_of_range_total %s after one out-of-range answer, want 1", got)
	}
	return e, b, r, refuse
}

// pushedFrom is how many of the records at offsets from to to-1 were
// pushed.
func pushedFrom(b *backend, from, to int) int {
	seen := map[string]bool{}
	for _, p := range b.got() {
		seen[p.offset] = true
	}
	n := 0
	for o := from; o < to; o++ {
		if seen[strconv.Itoa(o)] {
			n++
		}
	}
	return n
}

// TestOutOfRangeAboveTheLogEndSurvivesAStop attacks the same promise when
// the log ends below the offset read (a leader whose log is shorter, not
// reported as a truncation by the Kafka client), with a record read before
// still retried. The offset the policy chose waited for that record before
// it was stored: a process stopping meanwhile left the committed offset,
// above the log end when that record was above it, and the next owner
// skipped the records written at the offsets from the log end on. What is
// stored at once is the lower of the two: a record in flight below the
// log end is still in Kafka, and is pushed again by the next owner, not
// skipped.
func TestOutOfRangeAboveTheLogEndSurvivesAStop(t *testing.T) {
	for _, c := range []struct {
		name            string
		refused, logEnd int // the offset retried; the log end the leader answers
		want            string
	}{
		{"record retried above the log end", 9, 5, "5"}, // the log end stored
		{"record retried below the log end", 3, 5, "3"}, // kept: record 3 is still in Kafka
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
			e.produce(t, "t", numbered(0, 10, keyEach))
			b, refuse := refusingOffset(t, c.refused) // retried until the stop
			// Fetches past the 10 records wait (the leader said to be
			// moving) until the records before the one retried are
			// committed; the first one after that is answered
			// OFFSET_OUT_OF_RANGE, and the leader then says its log ends
			// at logEnd, until the stop.
			var armed, stopped atomic.Bool
			injected, _ := e.outOfRangeOnce(10, func() bool { return !armed.Load() })
			e.kafka.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
				e.kafka.KeepControl()
				if !injected.Load() || stopped.Load() {
					return nil, nil, false
				}
				return listedOffsets(req.(*kmsg.ListOffsetsRequest), 0, int64(c.logEnd)), nil, true
			})
			m := module("m", "t", b.URL)
			m.OffsetOutOfRange = "newest"
			r, admin := e.startAdmin(t, 0, m)
			waitFor(t, "the records before the one retried committed", 10*time.Second, func() bool {
				return e.storedOffset(t, "m", "t", 0) == strconv.Itoa(c.refused)
			})
			armed.Store(true)
			waitFor(t, "the out-of-range answer given", 10*time.Second, injected.Load)
			waitFor(t, "the policy applied", 10*time.Second, func() bool {
				v := metricValue(t, admin, `ktransfer_offset_out_of_range_total{module="m"}`)
				return v != "" && v != "0"
			})
			if err := r.stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			stopped.Store(true)
			if got := e.storedOffset(t, "m", "t", 0); got != c.want {
				t.Errorf("stored offset after the stop %s, want %s", got, c.want)
			}
			refuse.Store(false)
			before := len(b.got())
			e.start(t, m)
			// Kafka holds the records the module read: in the story told
			// here, records written from the log end on.
			from, _ := strconv.Atoi(c.want)
			waitFor(t, "the records from the stored offset on pushed by the next owner", 10*time.Second, func() bool {
				return len(b.got()) >= before+10-from
			})
			e.committedAtEnd(t, "m", "t")
		})
	}
}

// listedOffsets answers a ListOffsets request: the log starts at oldest
// and ends at newest, for every partition asked.
func listedOffsets(req *kmsg.ListOffsetsRequest, oldest, newest int64) *kmsg.ListOffsetsResponse {
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		for _, rp := range rt.Partitions {
			sp := kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition, sp.LeaderEpoch, sp.Offset = rp.Partition, -1, newest
			if rp.Timestamp == -2 { // the log start
				sp.Offset = oldest
			}
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// deleteRecordsBefore deletes the records of partition 0 of topic t
// below offset to: the log starts there.
func deleteRecordsBefore(t *testing.T, e *env, to int64) {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc))
	var trim kadm.Offsets
	trim.Add(kadm.Offset{Topic: "t", Partition: 0, At: to, LeaderEpoch: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := adm.DeleteRecords(ctx, trim); err != nil || res.Error() != nil {
		t.Fatalf("delete records before %d: %v %v", to, err, res.Error())
	}
}

// TestOutOfRangeAboveTheLogEndNeverStoresBelowTheLogStart: the offset read
// is above the log end (a leader says its log is [5, 7) while 10 was being
// read) and the committed offset, 3, is below the log start: record 3 was
// retried until retention passed it. "The lower of next and the committed
// offset" stored 3, which Kafka no longer has: a stop meanwhile had the
// next owner apply offset_out_of_range again, later (under newest skipping
// every record written in between). The log start is stored instead: the
// records from 5 are still in Kafka and read again after a crash.
func TestOutOfRangeAboveTheLogEndNeverStoresBelowTheLogStart(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", numbered(0, 10, keyEach))
	b, refuse := refusingOffset(t, 3)
	t.Cleanup(func() { refuse.Store(false) })
	var armed, stopped atomic.Bool
	injected, _ := e.outOfRangeOnce(10, func() bool { return !armed.Load() })
	e.kafka.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		if !injected.Load() || stopped.Load() {
			return nil, nil, false
		}
		return listedOffsets(req.(*kmsg.ListOffsetsRequest), 5, 7), nil, true // the log is [5, 7)
	})
	m := module("m", "t", b.URL)
	m.OffsetOutOfRange = "newest"
	r, _ := e.startAdmin(t, 0, m)
	waitFor(t, "3 committed, record 3 retried", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "3" })
	armed.Store(true)
	waitFor(t, "the out-of-range answer", 10*time.Second, injected.Load)
	waitFor(t, "the log start stored while record 3 is retried", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "5" })
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	stopped.Store(true)
	if s := e.storedOffset(t, "m", "t", 0); s != "5" {
		t.Errorf("stored offset after the stop %s, want 5: the log start (the committed offset 3 is below it)", s)
	}
}
