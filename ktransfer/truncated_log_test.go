package ktransfer_test

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
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
	recs := make([][2]string, 10)
	for i := range recs {
		recs[i] = [2]string{"k" + strconv.Itoa(i), strconv.Itoa(i)}
	}
	e.produce(t, "t", recs)
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the 10 records pushed", 10*time.Second, func() bool { return len(b.got()) == 10 })

	// The new leader answers the client's check of its epoch with a log end
	// below the module's position, once.
	var truncated atomic.Int64
	e.kafka.ControlKey(int16(kmsg.OffsetForLeaderEpoch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.OffsetForLeaderEpochRequest)
		resp := r.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetForLeaderEpochResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.LeaderEpoch = rp.LeaderEpoch
				sp.EndOffset = cut
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		truncated.Add(1)
		return resp, nil, true
	})
	leader := e.kafka.LeaderFor("t", 0)
	if err := e.kafka.MoveTopicPartition("t", 0, (leader+1)%3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new leader's log end asked", 10*time.Second, func() bool { return truncated.Load() > 0 })
	// From the new end on, kfake returns the records it has: in the story
	// told here, records written after the truncation.
	waitFor(t, "the records at offsets 5 to 9 after the truncation pushed", 10*time.Second, func() bool {
		seen := map[string]int{}
		for _, p := range b.got() {
			seen[p.offset]++
		}
		for o := cut; o < 10; o++ {
			if seen[strconv.Itoa(o)] < 2 {
				return false
			}
		}
		return true
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
	recs := make([][2]string, 10)
	for i := range recs {
		recs[i] = [2]string{"k" + strconv.Itoa(i), strconv.Itoa(i)}
	}
	e.produce(t, "t", recs)
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the 10 records pushed", 10*time.Second, func() bool { return len(b.got()) == 10 })

	var undefined atomic.Int64
	e.kafka.ControlKey(int16(kmsg.OffsetForLeaderEpoch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.OffsetForLeaderEpochRequest)
		resp := r.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetForLeaderEpochResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
				sp.Partition, sp.LeaderEpoch, sp.EndOffset = rp.Partition, -1, -1
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		undefined.Add(1)
		return resp, nil, true
	})
	if err := e.kafka.MoveTopicPartition("t", 0, (e.kafka.LeaderFor("t", 0)+1)%3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new leader's epoch history asked", 10*time.Second, func() bool { return undefined.Load() > 0 })
	// The last record read is at offset 9: the client goes back at least
	// to it, to a record that in the story told here replaced it.
	waitFor(t, "the record at offset 9 after the new leader pushed", 10*time.Second, func() bool {
		n := 0
		for _, p := range b.got() {
			if p.offset == "9" {
				n++
			}
		}
		return n >= 2
	})
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
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	recs := make([][2]string, 10)
	for i := range recs {
		recs[i] = [2]string{"k" + strconv.Itoa(i), strconv.Itoa(i)}
	}
	e.produce(t, "t", recs)
	var refuse atomic.Bool
	refuse.Store(true)
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if p.offset == "9" && refuse.Load() {
			w.WriteHeader(http.StatusServiceUnavailable) // retried until the stop
		}
	})
	r, admin := e.startAdmin(t, 0, module("m", "t", b.URL))
	waitFor(t, "offsets 0 to 8 pushed and committed, 9 retried", 10*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "9"
	})

	e.kafka.ControlKey(int16(kmsg.OffsetForLeaderEpoch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		q := req.(*kmsg.OffsetForLeaderEpochRequest)
		resp := q.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
		for _, rt := range q.Topics {
			st := kmsg.NewOffsetForLeaderEpochResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
				sp.Partition, sp.LeaderEpoch, sp.EndOffset = rp.Partition, rp.LeaderEpoch, cut
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	if err := e.kafka.MoveTopicPartition("t", 0, (e.kafka.LeaderFor("t", 0)+1)%3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the truncation seen by the module", 10*time.Second, func() bool {
		v := metricValue(t, admin, `ktransfer_offset_out_of_range_total{module="m"}`)
		return v != "" && v != "0"
	})
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := e.storedOffset(t, "m", "t", 0); got != strconv.Itoa(cut) {
		t.Fatalf("stored offset after the stop %s, want the new log end %d: the records written at offsets %d to 8 after the truncation are skipped by the next owner", got, cut, cut)
	}

	// The next owner pushes them.
	refuse.Store(false)
	before := len(b.got())
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the records at offsets 5 to 9 pushed again", 10*time.Second, func() bool {
		return len(b.got()) >= before+10-cut
	})
	e.committedAtEnd(t, "m", "t")
}

// TestTruncatedLogWhileWaitingOnARestart: a broker answers a fetch
// OFFSET_OUT_OF_RANGE for an offset Kafka has, and while the partition
// waits to restart there (a record read before is still retried), the
// leader's log is found to end below it (an unclean election: kgo reports
// the loss). The lower position must win: the records written at the
// offsets Kafka gave again are pushed, not skipped by a restart at the
// offset of the first answer.
func TestTruncatedLogWhileWaitingOnARestart(t *testing.T) {
	const cut = 5
	e, b, _, refuse := truncatedWhileWaiting(t, cut)
	refuse.Store(false)
	// From the new end on, kfake returns the records it has: in the story
	// told here, records written after the truncation.
	waitFor(t, "the records at offsets 5 to 8 after the truncation pushed", 10*time.Second, func() bool {
		seen := map[string]int{}
		for _, p := range b.got() {
			seen[p.offset]++
		}
		for o := cut; o < 9; o++ {
			if seen[strconv.Itoa(o)] < 2 {
				return false
			}
		}
		return true
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
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := e.storedOffset(t, "m", "t", 0); got != strconv.Itoa(cut) {
		t.Fatalf("stored offset after the stop %s, want the new log end %d", got, cut)
	}
	refuse.Store(false)
	before := len(b.got())
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the records at offsets 5 to 9 pushed again", 10*time.Second, func() bool {
		return len(b.got()) >= before+10-cut
	})
	e.committedAtEnd(t, "m", "t")
}

// truncatedWhileWaiting sets the scene of the tests above: 10 records,
// offsets 0 to 8 pushed, 9 refused while refuse holds; a fetch from 10
// answered OFFSET_OUT_OF_RANGE, then the leader moved to one whose log
// ends at cut, seen by the module.
func truncatedWhileWaiting(t *testing.T, cut int64) (*env, *backend, *running, *atomic.Bool) {
	t.Helper()
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	recs := make([][2]string, 10)
	for i := range recs {
		recs[i] = [2]string{"k" + strconv.Itoa(i), strconv.Itoa(i)}
	}
	e.produce(t, "t", recs)
	var refuse atomic.Bool
	refuse.Store(true)
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if p.offset == "9" && refuse.Load() {
			w.WriteHeader(http.StatusServiceUnavailable) // retried: the restart waits for it
		}
	})
	r, admin := e.startAdmin(t, 0, module("m", "t", b.URL))
	waitFor(t, "offsets 0 to 8 pushed and committed, 9 retried", 10*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "9"
	})

	// One fetch from offset 10 is answered OFFSET_OUT_OF_RANGE; the next
	// fetch from there shows that answer was taken by the module.
	var injected, seenAfter atomic.Bool
	e.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		at10 := false
		for _, rt := range fr.Topics {
			for _, rp := range rt.Partitions {
				at10 = at10 || rp.FetchOffset >= 10
			}
		}
		switch {
		case !at10:
		case !injected.Load():
			injected.Store(true)
			return kafkatest.FetchError(fr, kerr.OffsetOutOfRange.Code), nil, true
		default:
			seenAfter.Store(true)
		}
		return nil, nil, false
	})
	waitFor(t, "the out-of-range answer taken", 10*time.Second, seenAfter.Load)

	e.kafka.ControlKey(int16(kmsg.OffsetForLeaderEpoch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		q := req.(*kmsg.OffsetForLeaderEpochRequest)
		resp := q.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
		for _, rt := range q.Topics {
			st := kmsg.NewOffsetForLeaderEpochResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
				sp.Partition, sp.LeaderEpoch, sp.EndOffset = rp.Partition, rp.LeaderEpoch, cut
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	if err := e.kafka.MoveTopicPartition("t", 0, (e.kafka.LeaderFor("t", 0)+1)%3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the truncation seen by the module", 10*time.Second, func() bool {
		v := metricValue(t, admin, `ktransfer_offset_out_of_range_total{module="m"}`)
		return v != "" && v != "0"
	})
	return e, b, r, &refuse
}
