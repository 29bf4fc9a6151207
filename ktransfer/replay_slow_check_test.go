package ktransfer_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestReplayNotGivenUpOnRecordsFetchedDuringASlowCheck: the replay's
// check of a quiet partition fetches it from its leader, which can take
// long (a slow leader, 10 s per partition at most). The dead letters the
// client could not fetch before arrive during the second check, which
// ends past the stall bound: they must be pushed, not the replay given up
// with them fetched. Before, it gave up right after that check, without
// polling what the client held ("not read for 8s: the broker did not
// deliver them"), and a run again pushed every dead letter once more.
// (The check waits replayQuiet, 2 s, for its fetch: the first ends at
// about 4 s, below the 6 s bound; the second, which lets the client's
// fetches through, at about 8 s.)
func TestReplayNotGivenUpOnRecordsFetchedDuringASlowCheck(t *testing.T) {
	defer ktransfer.SetReplayQuiet(2 * time.Second)()
	defer ktransfer.SetReplayStall(6 * time.Second)()
	e, b, m := dlqModule(t, nil)
	e.produceRecords(t, deadLetterOf("m", "t", 0, "a"), deadLetterOf("m", "t", 1, "b"), deadLetterOf("m", "t", 2, "c"))
	k := e.kafka
	release := make(chan struct{})
	var once sync.Once
	var probes atomic.Int32
	k.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		if fr.SessionEpoch == -1 && fr.MaxWaitMillis == 0 { // the replay's check: slow
			if probes.Add(1) == 2 {
				once.Do(func() { close(release) }) // the client's fetch goes through meanwhile
			}
			k.SleepControl(func() { time.Sleep(3 * time.Second) }) // the check gives up at replayQuiet
			return nil, nil, false
		}
		k.SleepControl(func() { <-release }) // the client's fetches: held until the second check
		return nil, nil, false
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := ktransfer.Replay(ctx, e.config(t, 0, m), "m", time.Time{}, testLog(t))
	if err != nil {
		t.Fatalf("replay: %v (%v, %d checks' fetches)", err, rep, probes.Load())
	}
	if rep.Replayed != 3 || len(b.got()) != 3 {
		t.Errorf("replay: %v, %d pushes; want the 3 dead letters pushed", rep, len(b.got()))
	}
	if probes.Load() < 2 {
		t.Errorf("%d checks' fetches: the records came before the second check", probes.Load())
	}
}
