package ktransfer_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestTransientOutOfRangeKeepsItsPlace: a broker answers one fetch
// OFFSET_OUT_OF_RANGE for an offset Kafka still has (its log starts below
// it and ends above it). offset_out_of_range is for an offset Kafka no
// longer has: the partition reads on from that offset, neither skipping
// the records after it (newest) nor pushing the partition again from its
// oldest record (oldest), nor stopping the module (stop).
func TestTransientOutOfRangeKeepsItsPlace(t *testing.T) {
	for _, policy := range []string{"newest", "oldest", "stop"} {
		t.Run(policy, func(t *testing.T) { transientOutOfRange(t, policy, false) })
	}
}

// TestTransientOutOfRangeWhileListingFails: as above, and the first
// question for the partition's oldest offset after the answer fails (the
// brokers are in trouble): the range is asked again until known, not
// taken for unknown and the policy applied.
func TestTransientOutOfRangeWhileListingFails(t *testing.T) {
	transientOutOfRange(t, "newest", true)
}

func transientOutOfRange(t *testing.T, policy string, listFails bool) {
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", numbered(0, 30, keyOne))
	// Fetches past the first 30 records wait (the leader is said to
	// be moving) until the next 10 are written; the first one after
	// that is answered OFFSET_OUT_OF_RANGE.
	var armed atomic.Bool
	injected, _ := e.outOfRangeOnce(30, func() bool { return !armed.Load() })
	var listRefused atomic.Bool
	if listFails {
		// The first ListOffsets after the out-of-range answer fails.
		e.kafka.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
			e.kafka.KeepControl()
			if !injected.Load() || listRefused.Swap(true) {
				return nil, nil, false
			}
			lr := req.(*kmsg.ListOffsetsRequest)
			resp := lr.ResponseKind().(*kmsg.ListOffsetsResponse)
			for _, rt := range lr.Topics {
				st := kmsg.NewListOffsetsResponseTopic()
				st.Topic = rt.Topic
				for _, rp := range rt.Partitions {
					sp := kmsg.NewListOffsetsResponseTopicPartition()
					sp.Partition, sp.ErrorCode, sp.Offset = rp.Partition, kerr.UnknownServerError.Code, -1
					st.Partitions = append(st.Partitions, sp)
				}
				resp.Topics = append(resp.Topics, st)
			}
			return resp, nil, true
		})
	}
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.OffsetOutOfRange = policy
	e.start(t, m)
	waitFor(t, "the first 30 records pushed", 10*time.Second, func() bool { return len(b.got()) >= 30 })
	e.produce(t, "t", numbered(30, 40, keyOne))
	armed.Store(true)
	waitFor(t, "a fetch answered OFFSET_OUT_OF_RANGE", 10*time.Second, injected.Load)
	waitFor(t, "offset 40 stored", 15*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "40" })
	count := map[string]int{}
	for _, p := range b.got() {
		count[p.body]++
	}
	for i := range 40 {
		if n := count[strconv.Itoa(i)]; n != 1 {
			t.Errorf("record %d pushed %d times, want once", i, n)
		}
	}
	if listFails && !listRefused.Load() {
		t.Error("no ListOffsets request was refused")
	}
}
