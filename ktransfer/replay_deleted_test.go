package ktransfer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestReplayCountsDeadLettersDeletedWhileItWaited: the three dead letters
// of the topic are deleted (retention, DeleteRecords) while the replay's
// first fetch is held, so it reads none of them, and its check of the
// quiet partition finds the log start at the end. They must be counted
// as deleted before read (logged as lost; ktransfer_bin exits 3), not
// taken as a partition finished. Before, the replay ended as done:
// replayed 0, deleted before read 0.
func TestReplayCountsDeadLettersDeletedWhileItWaited(t *testing.T) {
	defer ktransfer.SetReplayQuiet(time.Second)()
	e, b, m := dlqModule(t, nil)
	e.produceRecords(t, deadLetterOf("m", "t", 0, "a"), deadLetterOf("m", "t", 1, "b"), deadLetterOf("m", "t", 2, "c"))
	k := e.kafka
	var deleted atomic.Bool
	k.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		for _, rt := range req.(*kmsg.FetchRequest).Topics {
			for _, rp := range rt.Partitions {
				if rp.FetchOffset == 0 && deleted.CompareAndSwap(false, true) {
					k.SleepControl(func() { deleteDeadLettersBelow(t, e, 3) })
					k.DropControl()
				}
			}
		}
		return nil, nil, false
	})
	replayAllDeleted(t, e, m, b, &deleted, "the first fetch was never held")
}

// TestReplayCountsDeadLettersDeletedWhenKafkaHidesTheLogStart: as above,
// with the check's fetch below the log start answered as Kafka answers it,
// OFFSET_OUT_OF_RANGE without the log start (-1; the test brokers give
// it). The dead letters must still be counted as deleted before read, the
// log start asked for. Before, the check could not tell, and the replay
// failed once it had waited replayStall: "not read … the broker did not
// deliver them", nothing counted as lost.
func TestReplayCountsDeadLettersDeletedWhenKafkaHidesTheLogStart(t *testing.T) {
	defer ktransfer.SetReplayQuiet(time.Second)()
	defer ktransfer.SetReplayStall(8 * time.Second)()
	e, b, m := dlqModule(t, nil)
	e.produceRecords(t, deadLetterOf("m", "t", 0, "a"), deadLetterOf("m", "t", 1, "b"), deadLetterOf("m", "t", 2, "c"))
	k := e.kafka
	var deleted, hidden atomic.Bool
	k.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		for _, rt := range fr.Topics {
			for _, rp := range rt.Partitions {
				switch {
				case rp.FetchOffset == 0 && deleted.CompareAndSwap(false, true):
					k.SleepControl(func() { deleteDeadLettersBelow(t, e, 3) })
				case deleted.Load() && rp.FetchOffset < 3 && fr.SessionEpoch == -1 && fr.MaxWaitMillis == 0:
					// The replay's check (no session, no wait), below the
					// log start: Kafka's answer.
					hidden.Store(true)
					return kafkatest.FetchError(fr, kerr.OffsetOutOfRange.Code), nil, true
				}
			}
		}
		return nil, nil, false
	})
	replayAllDeleted(t, e, m, b, &hidden, "the check's fetch below the log start never came")
}

// deleteDeadLettersBelow deletes the records of the dead-letter topic
// dlq's partition 0 below offset at (DeleteRecords: as retention does).
func deleteDeadLettersBelow(t *testing.T, e *env, at int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := kadm.Offsets{}
	o.Add(kadm.Offset{Topic: "dlq", Partition: 0, At: at})
	if res, err := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc)).DeleteRecords(ctx, o); err != nil || res.Error() != nil {
		t.Errorf("delete records: %v %v", err, res.Error())
	}
}

// replayAllDeleted replays module m's dead letters and checks that the 3
// of them were counted as deleted before they were read, none pushed to b;
// faulted tells the test's fault was met (else notMet).
func replayAllDeleted(t *testing.T, e *env, m ktransfer.Module, b *backend, faulted *atomic.Bool, notMet string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := ktransfer.Replay(ctx, e.config(t, 0, m), "m", time.Time{}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	if !faulted.Load() {
		t.Fatal(notMet)
	}
	if rep.Replayed != 0 || rep.Deleted != 3 || len(b.got()) != 0 {
		t.Errorf("replay: %v, %d pushes; want the 3 dead letters counted as deleted before read", rep, len(b.got()))
	}
}
