package ktransfer_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRecreatedDeadLetterTopicIsWritten: the dead-letter topic is deleted
// and created again while the module runs, after dead letters were
// written to it. A record given up later is written to the new topic, and
// the module moves on.
//
// Six dead letters are written before the deletion: kfake keeps a
// producer's sequence numbers per topic name and partition across a
// deletion (a broker drops them with the partition's log), and would take
// a first write to the new topic for a duplicate of one of the deleted
// topic's last five batches, answering with that batch's offset without
// appending it.
func TestRecreatedDeadLetterTopicIsWritten(t *testing.T) {
	e, _ := startDeadLettering(t)
	for i := range 6 {
		e.produce(t, "t", [][2]string{{"k", "old" + strconv.Itoa(i)}})
		waitFor(t, "a record dead-lettered into the first topic", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == strconv.Itoa(i+1) })
	}

	e.recreateTopic(t, "dl", 1)

	e.produce(t, "t", [][2]string{{"k", "second"}})
	waitFor(t, "the second record dead-lettered into the new topic", 25*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "7" })
	if end := kafkatest.EndOffsets(t, e.kafka, e.kc, "dl"); end[0] != 1 {
		t.Errorf("the new dead-letter topic ends at %d, want 1 (the second record's dead letter)", end[0])
	}
}
