package ktransfer_test

import (
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestPassingOutOfRangeDoesNotWaitForARetriedRecord: a broker answers one
// fetch OFFSET_OUT_OF_RANGE for an offset Kafka has (the log end; a leader
// moving) while a record of another key is retried. README: such an
// answer "is a warning, and the partition reads on from that offset".
// The records written after it, each of its own key, must be pushed while
// the retried one goes on; before, the partition waited for every record
// dispatched before to be acknowledged and committed, as for an offset
// that moved: with max_retry_times -1 and a record the backend refuses,
// for ever, behind one key.
func TestPassingOutOfRangeDoesNotWaitForARetriedRecord(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", numbered(0, 10, keyEach))
	b, refuse := refusingOffset(t, 9)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "offsets 0 to 8 pushed and committed, 9 retried", 10*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "9"
	})
	injected, _ := e.outOfRangeOnce(10, nil) // 10 is the log end: Kafka has it
	// A fetch every fetchMaxWait at most; a loaded CI machine (the race
	// detector, three test binaries) once went 10 s without one.
	waitFor(t, "a fetch answered OFFSET_OUT_OF_RANGE", 30*time.Second, injected.Load)
	e.produce(t, "t", numbered(10, 20, keyEach))
	deadline := time.Now().Add(10 * time.Second)
	for pushedFrom(b, 10, 20) < 10 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	n := pushedFrom(b, 10, 20)
	refuse.Store(false)
	if n < 10 {
		t.Fatalf("%d of the 10 records written after a passing OFFSET_OUT_OF_RANGE pushed in 10 s while offset 9 (another key) was retried; the partition waits for it", n)
	}
	waitFor(t, "offset 9 pushed once accepted, and everything committed", 10*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "20"
	})
}
