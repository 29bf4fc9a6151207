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

// The brokers' answers the truncation, out-of-range and fetch-error tests
// inject, and the scenes they share.

// numbered are the records from to to-1 as (key, value): the value is the
// record's number, the key key(number).
func numbered(from, to int, key func(int) string) [][2]string {
	recs := make([][2]string, 0, to-from)
	for i := from; i < to; i++ {
		recs = append(recs, [2]string{key(i), strconv.Itoa(i)})
	}
	return recs
}

// keyEach gives each record a key of its own; keyOne gives them one key.
func keyEach(i int) string { return "k" + strconv.Itoa(i) }
func keyOne(int) string    { return "k" }

// refuseFetches answers the fetches for which refuse holds (nil: every
// fetch) with the error code, and counts them. refuse runs in the
// broker's control function: e.kafka.CurrentNode() is the broker asked.
func (e *env) refuseFetches(code int16, refuse func() bool) *atomic.Int64 {
	var refused atomic.Int64
	e.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		if refuse != nil && !refuse() {
			return nil, nil, false
		}
		refused.Add(1)
		return kafkatest.FetchError(req.(*kmsg.FetchRequest), code), nil, true
	})
	return &refused
}

// refuseFetchesAtBroker0 answers every fetch broker 0 gets with an error
// the Kafka client does not retry by itself (the module's principal may
// not read there), partition p of topic led by broker p (n partitions).
func (e *env) refuseFetchesAtBroker0(t *testing.T, topic string, n int32) *atomic.Int64 {
	t.Helper()
	for p := range n {
		if err := e.kafka.MoveTopicPartition(topic, p, p); err != nil { // partition p led by broker p
			t.Fatal(err)
		}
	}
	return e.refuseFetches(kerr.TopicAuthorizationFailed.Code, func() bool { return e.kafka.CurrentNode() == 0 })
}

// outOfRangeOnce answers one fetch from offset from or beyond
// OFFSET_OUT_OF_RANGE. Before it, such fetches are answered
// NOT_LEADER_FOR_PARTITION while hold holds (nil: never; the leader said
// to be moving). Until the answer, it ends the fetch sessions it sees, so
// that each fetch names its offsets. injected tells the answer was given;
// fetchedAfter that a fetch from there came after it (the module took the
// answer).
func (e *env) outOfRangeOnce(from int64, hold func() bool) (injected, fetchedAfter *atomic.Bool) {
	injected, fetchedAfter = new(atomic.Bool), new(atomic.Bool)
	e.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		if resp := kafkatest.EndFetchSession(fr); resp != nil && !injected.Load() {
			// Installed after the module caught up, this function would
			// not see the offset it waits for in a session's fetches.
			return resp, nil, true
		}
		past := false
		for _, rt := range fr.Topics {
			for _, rp := range rt.Partitions {
				past = past || rp.FetchOffset >= from
			}
		}
		switch {
		case !past:
		case injected.Load():
			fetchedAfter.Store(true)
		case hold != nil && hold():
			return kafkatest.FetchError(fr, kerr.NotLeaderForPartition.Code), nil, true
		default:
			injected.Store(true)
			return kafkatest.FetchError(fr, kerr.OffsetOutOfRange.Code), nil, true
		}
		return nil, nil, false
	})
	return injected, fetchedAfter
}

// logEndsAtOnce answers the next OffsetForLeaderEpoch request, once: every
// partition asked ends at end in the epoch asked (an unclean election: the
// records from end on were lost), or with end < 0, the leader has no
// record of that epoch (UNDEFINED_EPOCH_OFFSET). It counts the answers.
func (e *env) logEndsAtOnce(end int64) *atomic.Int64 {
	var answered atomic.Int64
	e.kafka.ControlKey(int16(kmsg.OffsetForLeaderEpoch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		q := req.(*kmsg.OffsetForLeaderEpochRequest)
		resp := q.ResponseKind().(*kmsg.OffsetForLeaderEpochResponse)
		for _, rt := range q.Topics {
			st := kmsg.NewOffsetForLeaderEpochResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetForLeaderEpochResponseTopicPartition()
				sp.Partition, sp.LeaderEpoch, sp.EndOffset = rp.Partition, rp.LeaderEpoch, end
				if end < 0 {
					sp.LeaderEpoch, sp.EndOffset = -1, -1
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		answered.Add(1)
		return resp, nil, true
	})
	return &answered
}

// moveLeader moves partition p of topic to the next of the three brokers.
func (e *env) moveLeader(t *testing.T, topic string, p int32) {
	t.Helper()
	if err := e.kafka.MoveTopicPartition(topic, p, (e.kafka.LeaderFor(topic, p)+1)%3); err != nil {
		t.Fatal(err)
	}
}

// waitTruncationSeen waits until module m counted an offset out of range
// (a truncation reported by the Kafka client counts as one).
func waitTruncationSeen(t *testing.T, admin string) {
	t.Helper()
	waitFor(t, "the truncation seen by the module", 10*time.Second, func() bool {
		v := metricValue(t, admin, `ktransfer_offset_out_of_range_total{module="m"}`)
		return v != "" && v != "0"
	})
}

// pushedTwice reports whether the records at offsets from to to-1 were
// each pushed twice or more.
func pushedTwice(b *backend, from, to int) bool {
	seen := map[string]int{}
	for _, p := range b.got() {
		seen[p.offset]++
	}
	for o := from; o < to; o++ {
		if seen[strconv.Itoa(o)] < 2 {
			return false
		}
	}
	return true
}

// refusingOffset is a backend that answers 503 to every push of the
// record at offset while refuse holds (it does at first): the record is
// retried, and holds its partition's commit point, until the test lets it
// through.
func refusingOffset(t *testing.T, offset int) (b *backend, refuse *atomic.Bool) {
	t.Helper()
	refuse = new(atomic.Bool)
	refuse.Store(true)
	at := strconv.Itoa(offset)
	b = newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if p.offset == at && refuse.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	return b, refuse
}

// startRetryingLast writes 10 records (each its own key) to the one
// partition of topic t on a three-broker cluster and runs module m, with
// an admin listener, pushing them to a backend that refuses offset 9
// while refuse holds; it returns once offsets 0 to 8 are pushed and
// committed.
func startRetryingLast(t *testing.T) (e *env, b *backend, r *running, admin string, refuse *atomic.Bool) {
	t.Helper()
	e = newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", numbered(0, 10, keyEach))
	b, refuse = refusingOffset(t, 9)
	r, admin = e.startAdmin(t, 0, module("m", "t", b.URL))
	waitFor(t, "offsets 0 to 8 pushed and committed, 9 retried", 10*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "9"
	})
	return e, b, r, admin, refuse
}

// stopLeavesNewEnd stops r, which must leave the new log end cut stored,
// then lets offset 9 through and starts the partition's next owner: it
// pushes the records from cut on and commits the end.
func stopLeavesNewEnd(t *testing.T, e *env, b *backend, r *running, refuse *atomic.Bool, cut int) {
	t.Helper()
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := e.storedOffset(t, "m", "t", 0); got != strconv.Itoa(cut) {
		t.Fatalf("stored offset after the stop %s, want the new log end %d: the records written at offsets %d to 8 after the truncation are skipped by the next owner", got, cut, cut)
	}
	refuse.Store(false)
	before := len(b.got())
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the records at offsets "+strconv.Itoa(cut)+" to 9 pushed again", 10*time.Second, func() bool {
		return len(b.got()) >= before+10-cut
	})
	e.committedAtEnd(t, "m", "t")
}
