package ktransfer_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestDeadLetterTopicRecreatedBeforeTheFirstWriteLosesNothing: the
// dead-letter topic is deleted and created again between the module's
// look-up of it and the Kafka client's, before the first dead letter.
// Three dead letters go to the new topic; then the brokers answer
// UNKNOWN_TOPIC_ID for a while (a broker behind), and the next dead letter
// is written once they take it again. The module must not take the new
// topic for one replaced since its look-up and restart the client's
// sequence numbers there: the broker would take the retry for a duplicate
// of the first dead letter, answer success, and append nothing.
func TestDeadLetterTopicRecreatedBeforeTheFirstWriteLosesNothing(t *testing.T) {
	e, _ := startDeadLettering(t)
	ktransfer.BeforeFirstDeadLetterWrite(t, func() { e.recreateTopic(t, "dl", 1) })
	for i := range 3 {
		e.produce(t, "t", [][2]string{{"k", "r" + strconv.Itoa(i)}})
		waitFor(t, "a record dead-lettered", 20*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == strconv.Itoa(i+1) })
	}
	if end := kafkatest.EndOffsets(t, e.kafka, e.kc, "dl"); end[0] != 3 {
		t.Fatalf("set-up: the new dead-letter topic ends at %d, want 3", end[0])
	}

	unknownTopicIDAt(t, e, "dl")
	e.produce(t, "t", [][2]string{{"k", "r3"}})
	waitFor(t, "the fourth record dead-lettered", 30*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "4" })
	if end := kafkatest.EndOffsets(t, e.kafka, e.kc, "dl"); end[0] != 4 {
		t.Errorf("the dead-letter topic ends at %d, want 4: a dead letter answered as written is not in it", end[0])
	}
}
