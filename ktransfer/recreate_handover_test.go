package ktransfer_test

import (
	"net/http"
	"strconv"
	"sync/atomic"
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

	news := recreateDuringHandOver(t, e, m, false, "no partition was being released")

	waitForNewTopicPushed(t, e, b, news)
}

// TestRecreatedTopicFoundWhileAHandOverWaitsForAPush attacks the same
// promise when the partition being handed over is no longer read: its
// release took it from the reader, and waits for a push in progress to a
// slow backend, when the fetch of the partition the process keeps finds the
// topic created again. Only the partitions still read were marked: the
// hand-over, once the push ended, stored the deleted topic's offset, and
// the next owner read the new topic from there, skipping its first records.
func TestRecreatedTopicFoundWhileAHandOverWaitsForAPush(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	var letGo atomic.Bool
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		for (p.body == "slow0" || p.body == "slow1") && !letGo.Load() {
			time.Sleep(5 * time.Millisecond)
		}
	})
	// A test failing before it lets the pushes go must not leave the
	// backend's handlers running: the backend's close waits for them.
	t.Cleanup(func() { letGo.Store(true) })
	// Whichever partition is handed over has a push in progress.
	writeKeys(t, e, 0, []string{"a0", "a1", "a2", "slow0"})
	writeKeys(t, e, 1, []string{"b0", "b1", "b2", "slow1"})
	m := module("m", "t", b.URL)
	e.start(t, m)
	waitFor(t, "the slow pushes in progress", 10*time.Second, func() bool { return pushed(b, "slow0") && pushed(b, "slow1") })
	waitFor(t, "the records before them committed", 10*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "3" && e.storedOffset(t, "m", "t", 1) == "3"
	})

	news := recreateDuringHandOver(t, e, m, true, "no hand-over was waiting for its push")
	// The partition kept stores its start in the new topic at once, its
	// push still in progress; the process has handled the topic created
	// again by then. The push ends after that, and the hand-over goes on.
	waitFor(t, "the kept partition's start in the new topic stored", 10*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "0" || e.storedOffset(t, "m", "t", 1) == "0"
	})
	letGo.Store(true)

	waitForNewTopicPushed(t, e, b, news)
}

// waitForNewTopicPushed waits until every partition of topic t in module
// m is committed to the end of its records in the new topic, news, and
// checks that each of them was pushed.
func waitForNewTopicPushed(t *testing.T, e *env, b *backend, news [][]string) {
	t.Helper()
	waitFor(t, "every partition committed to the new topic's end", 30*time.Second, func() bool {
		for part, values := range news {
			if e.storedOffset(t, "m", "t", part) != strconv.Itoa(len(values)) {
				return false
			}
		}
		return true
	})
	for part, values := range news {
		for _, v := range values {
			if !pushed(b, v) {
				t.Errorf("%s, a record of the new topic's partition %d, never pushed, and its end committed", v, part)
			}
		}
	}
}

// recreateDuringHandOver deletes topic t (2 partitions) and creates it
// again with more records per partition than the deleted one had (reading
// the new topic from the stored offset would skip the first three of a
// partition), and starts a second process running m once the first one
// finds the topic created again, holding that finding until a partition's
// release is under way (HoldTopicGone; unassigned: no longer read and
// waiting for a push). It fails with missing when no release was. It
// returns the new records per partition.
func recreateDuringHandOver(t *testing.T, e *env, m ktransfer.Module, unassigned bool, missing string) [][]string {
	t.Helper()
	waiting, ended := ktransfer.HoldTopicGone(t, unassigned)
	e.recreateTopic(t, "t", 2)
	news := [][]string{{"n0", "n1", "n2", "n3", "n4", "n5"}, {"m0", "m1", "m2", "m3", "m4", "m5"}}
	for part, values := range news {
		writeKeys(t, e, int32(part), values)
	}
	// kgo reports UNKNOWN_TOPIC_ID after six failed fetches, about 10 s,
	// later on a loaded machine.
	waitFor(t, "the process finding the topic created again", 60*time.Second, waiting.Load)
	e.start(t, m) // joins: one of the partitions is handed over to it
	if !<-ended {
		t.Fatal(missing + " when the process handled the topic created again")
	}
	return news
}
