package ktransfer_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestReplayReportsDeadLettersDeletedBeforeRead attacks DESIGN's "A
// record given up on is never lost silently: it is logged and counted" in
// the replay. It lists dlq's range at its start (10 dead letters, offsets
// 0..9); before it reads them, offsets 0..4 are deleted (DeleteRecords,
// as retention does to the oldest segments). Kafka's client moved on to
// the new log start by itself, and the replay ended with exit status 0
// ("replayed 5, given up 0, ...") and no word of the 5 others, as if the
// topic had held 5. They are now counted (deleted before read 5), logged
// with their range, and the command exits 3.
func TestReplayReportsDeadLettersDeletedBeforeRead(t *testing.T) {
	e, b, m := dlqModule(t, nil)
	var recs []*kgo.Record
	for i := range 10 {
		recs = append(recs, deadLetterOf("m", "t", i, "v"+strconv.Itoa(i)))
	}
	e.produceRecords(t, recs...)
	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc))
	var deleted atomic.Bool
	e.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		for _, rt := range req.(*kmsg.FetchRequest).Topics {
			for _, rp := range rt.Partitions {
				if rp.FetchOffset == 0 && deleted.CompareAndSwap(false, true) {
					e.kafka.SleepControl(func() {
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						defer cancel()
						o := kadm.Offsets{}
						o.Add(kadm.Offset{Topic: "dlq", Partition: 0, At: 5})
						if res, err := adm.DeleteRecords(ctx, o); err != nil || res.Error() != nil {
							t.Errorf("delete records: %v %v", err, res.Error())
						}
					})
					e.kafka.DropControl()
				}
			}
		}
		return nil, nil, false
	})
	var logs runtest.Log
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := ktransfer.Replay(ctx, e.config(t, 0, m), "m", time.Time{}, slog.New(slog.NewTextHandler(&logs, nil)))
	t.Logf("replay: %v, err %v; pushes %d", rep, err, len(b.got()))
	if !deleted.Load() {
		t.Fatal("the first fetch at offset 0 was not seen")
	}
	if err != nil || rep.Replayed != 5 || rep.Deleted != 5 {
		t.Errorf("replay: %v, err %v; want replayed 5, deleted before read 5", rep, err)
	}
	if l := logs.String(); !strings.Contains(l, `level=ERROR msg="dead letters deleted before the replay read them (retention, or records deleted): lost"`) ||
		!strings.Contains(l, "partition=0 from=0 to=5 count=5") {
		t.Errorf("the deleted range was not logged:\n%s", logs.String())
	}
}
