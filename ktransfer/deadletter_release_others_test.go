package ktransfer_test

import (
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestReleasedDeadLetterFailsNoOther: the dead letters of partitions 0 and
// 1 wait in the dead-letter topic's client, in one batch, behind a write
// the broker holds; partition 0 is then released (its owner node deleted:
// deposed), which ends its write's context. Kafka's client fails every
// unsent batch of a partition with the context error of the batch's first
// record: partition 1's dead letter failed with "context canceled" though
// its own context was live, and was counted and logged as a failed write
// (ktransfer_dead_letter_write_errors_total, an error line) and retried
// after a second — across modules, when they share the topic. It is sent
// again at once now, as nothing of it was sent: no error.
func TestReleasedDeadLetterFailsNoOther(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 3}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	id := topicID(t, e, "dlq")
	hold := make(chan struct{})
	var released atomic.Bool
	t.Cleanup(func() {
		if !released.Swap(true) {
			close(hold)
		}
	})
	var hung atomic.Int64
	e.kafka.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			if (tp.Topic == "dlq" || tp.TopicID == id) && hung.Add(1) == 1 {
				e.kafka.SleepControl(func() { <-hold }) // the first dead-letter write alone
				break
			}
		}
		return nil, nil, false
	})
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dlq"
	var logs runtest.Log
	tr, err := ktransfer.New(e.config(t, 0, m), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "the process holding the three partitions", 30*time.Second, func() bool { return len(tr.Status()[0].Partitions) == 3 })

	writeKeys(t, e, 2, []string{"c"}) // its dead letter: the write held
	waitFor(t, "the first dead-letter write held by the broker", 30*time.Second, func() bool { return hung.Load() >= 1 })
	writeKeys(t, e, 0, []string{"a"}) // then partition 0's, first in the next batch
	time.Sleep(300 * time.Millisecond)
	writeKeys(t, e, 1, []string{"b"}) // and partition 1's behind it
	time.Sleep(300 * time.Millisecond)
	if err := e.conn.Delete(zklayout.Owners(chroot, "m", "t")+"/0", -1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // partition 0 deposed, its write's context ended
	released.Store(true)
	close(hold)
	waitFor(t, "partition 1's record dead-lettered and committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 1) == "1" })
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "dead-letter write failed") && strings.Contains(line, "partition=1 ") {
			t.Errorf("partition 1's dead letter, failed by Kafka's client with the released partition's context: %s", line)
		}
	}
}
