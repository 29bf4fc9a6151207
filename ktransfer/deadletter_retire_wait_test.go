package ktransfer_test

import (
	"sync"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// The dead-letter topic is deleted and created again while another dead
// letter of it is in flight (the broker holds it: the topic's lock is
// held shared). A record given up next gets UNKNOWN_TOPIC_ID, and its
// worker waits for the topic's lock alone to replace the topic's
// client. When the partition is released meanwhile, that wait ends with
// the write's context: the record is left uncommitted either way, and the
// release (here a stop) must not wait shutdown_timeout_ms for a new
// client of no use to it.
func TestStopDoesNotWaitToReplaceARecreatedDeadLetterTopicsClient(t *testing.T) {
	e, tr, logs, stop := startRefusingIntoDeadLetters(t, "dl")
	e.produce(t, "t", [][2]string{{"k", "first"}})
	waitFor(t, "the first record dead-lettered", 30*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "1" })

	e.recreateTopic(t, "dl", 1)
	unlock := sync.OnceFunc(ktransfer.ShareDeadLetterTopic(tr, "dl"))
	t.Cleanup(unlock)
	e.produce(t, "t", [][2]string{{"k", "second"}})
	waitFor(t, "the worker waiting to replace the client of the topic created again", 30*time.Second, ktransfer.WaitingForDeadLetterLock)
	// The write in flight ends once the stop gave the record up.
	took := stopUnlockingWhenStopped(t, stop, logs, "offset=1", unlock)
	t.Logf("stop took %v", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("stop took %v with shutdown_timeout_ms 5000: the release waited for the dead-letter topic's lock to replace its client, though its write's context had ended", took.Round(time.Millisecond))
	}
	if !logged(logs, "dead-letter write stopped", "offset=1") {
		t.Error("the second record was not left uncommitted by a stopped dead-letter write")
	}
}
