package ktransfer_test

import (
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRecreatedTopicFoundDuringAHandOver attacks the promise that the
// start in a topic deleted and created again is stored at once, so that a
// next owner does not read the new topic from the deleted topic's offset.
// The process finds the topic created again while it hands a partition
// over to a process joining (the release starts during the look-up of the
// topic's id). The partition being released was left out: its hand-over
// stored the deleted topic's offset, and the next owner, which never read
// the deleted topic, read the new one from there, skipping its first
// records.
func TestRecreatedTopicFoundDuringAHandOver(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	b := newBackend(t, nil)
	writeKeys(t, e, 0, []string{"a0", "a1", "a2"})
	writeKeys(t, e, 1, []string{"b0", "b1", "b2"})
	m := module("m", "t", b.URL)
	e.start(t, m)
	waitFor(t, "the first topic's records committed", 10*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "3" && e.storedOffset(t, "m", "t", 1) == "3"
	})

	waiting := ktransfer.HoldTopicGone(t)
	e.recreateTopic(t, "t", 2)
	// More records than the deleted topic had: reading the new topic from
	// the stored offset would skip the first three of a partition.
	news := [][]string{{"n0", "n1", "n2", "n3", "n4", "n5"}, {"m0", "m1", "m2", "m3", "m4", "m5"}}
	for part, values := range news {
		writeKeys(t, e, int32(part), values)
	}
	// kgo reports UNKNOWN_TOPIC_ID after six failed fetches, about 10 s.
	waitFor(t, "the process finding the topic created again", 30*time.Second, waiting.Load)
	e.start(t, m) // joins: one of the partitions is handed over to it

	waitFor(t, "both partitions committed to the new topic's end", 30*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "6" && e.storedOffset(t, "m", "t", 1) == "6"
	})
	for part, values := range news {
		for _, v := range values {
			if !pushed(b, v) {
				t.Errorf("%s, a record of the new topic's partition %d, never pushed, and its end committed", v, part)
			}
		}
	}
}
