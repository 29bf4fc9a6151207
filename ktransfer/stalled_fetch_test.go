package ktransfer_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestStalledPartitionIsNotFetchedInALoop: a partition whose fetches are
// answered OFFSET_OUT_OF_RANGE stops while its goroutine applies
// offset_out_of_range (here a broker's passing answer: the offset is in
// the log, and the answer comes again, so each restart waits longer),
// while another partition of the module, led by another broker, keeps
// bringing records. The stopped partition must not be fetched meanwhile:
// the Kafka client kept it (no reset offset) and asked for it again after
// every poll, each fetch answered at once with the same error, hundreds a
// second for as long as the stop lasted (up to 5 s per restart here; until
// a failing backend's record is pushed when the restart waits for it).
func TestStalledPartitionIsNotFetchedInALoop(t *testing.T) {
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	for p := range int32(2) {
		if err := e.kafka.MoveTopicPartition("t", p, p); err != nil { // partition p led by broker p
			t.Fatal(err)
		}
	}
	refused := e.refuseFetches(kerr.OffsetOutOfRange.Code, func() bool { return e.kafka.CurrentNode() == 0 })
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "partition 0's fetches refused", 10*time.Second, func() bool { return refused.Load() > 0 })
	from, start := refused.Load(), time.Now()
	sent := e.produceToFor(t, "t", 1, 2*time.Second)
	n := refused.Load() - from
	t.Logf("%d records written to partition 1, %d fetches of partition 0 answered out of range in %v", sent, n, time.Since(start))
	// A restart fetches once; they come at growing intervals (0.1 s,
	// 0.2 s, … for a passing answer given again): a handful in 2 s.
	if n > 20 {
		t.Errorf("partition 0 fetched %d times in %v while it stood still", n, time.Since(start))
	}
	waitFor(t, "partition 1's records pushed", 10*time.Second, func() bool { return len(b.got()) >= sent })
}
