package ktransfer

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestReplayCheckCountsOnlyWhatWasDeleted: the check of a quiet partition
// walks an aborted transaction (offsets 0..1, read by the check), then the
// log start moves to the end (5) before its next fetch. Only [2,5) was
// deleted before it was read, and only that is counted as deleted before
// read; a first version of the count took [0,5).
func TestReplayCheckCountsOnlyWhatWasDeleted(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "dlq", Partitions: 1}})
	kc := kafkaconf.Default()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	txn := kafkatest.Client(t, k, kc, kgo.TransactionalID("rev"))
	plain := kafkatest.Client(t, k, kc)
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, &kgo.Record{Topic: "dlq", Value: []byte("a0")}, &kgo.Record{Topic: "dlq", Value: []byte("a1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	if err := plain.ProduceSync(ctx, &kgo.Record{Topic: "dlq", Value: []byte("d3")}, &kgo.Record{Topic: "dlq", Value: []byte("d4")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(kafkatest.Client(t, k, kc))
	ends, err := adm.ListEndOffsets(ctx, "dlq")
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup("dlq", 0)
	t.Logf("end %d", end.Offset)
	var n atomic.Int32
	k.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		r := req.(*kmsg.FetchRequest)
		if r.SessionEpoch != -1 {
			return nil, nil, false
		}
		for i := range r.Topics {
			for j := range r.Topics[i].Partitions {
				rp := &r.Topics[i].Partitions[j]
				switch n.Add(1) {
				case 1: // the check's first fetch: one batch (the aborted one)
					rp.PartitionMaxBytes = 1
				case 2: // before its second fetch, the log start moves to the end
					k.SleepControl(func() {
						o := kadm.Offsets{}
						o.Add(kadm.Offset{Topic: "dlq", Partition: 0, At: end.Offset})
						if res, err := adm.DeleteRecords(ctx, o); err != nil || res.Error() != nil {
							t.Errorf("delete: %v %v", err, res.Error())
						}
					})
				}
				t.Logf("probe fetch %d at %d", n.Load(), rp.FetchOffset)
			}
		}
		return nil, nil, false
	})
	probe := kafkatest.Client(t, k, kc)
	var rep ReplayReport
	consume := map[int32]kgo.Offset{0: kgo.NewOffset().At(0)}
	pos := map[int32]int64{0: 0}
	endm := map[int32]int64{0: end.Offset}
	replayCheck(ctx, probe, slog.New(slog.DiscardHandler), &rep, "dlq", consume, pos, endm, time.Second)
	if len(consume) != 0 {
		t.Fatalf("partition not dropped: pos %v", pos)
	}
	if rep.Deleted != end.Offset-2 {
		t.Errorf("deleted before read %d, want %d (offsets 0..1 were read by the check, as aborted)", rep.Deleted, end.Offset-2)
	}
}
