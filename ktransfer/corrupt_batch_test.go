package ktransfer_test

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// fetchWarnings keeps the attributes of the "kafka fetch error" warnings.
type fetchWarnings struct {
	mu   *sync.Mutex
	seen *[]map[string]slog.Value
	with []slog.Attr
}

func (h fetchWarnings) Enabled(context.Context, slog.Level) bool { return true }
func (h fetchWarnings) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "kafka fetch error" {
		return nil
	}
	attrs := map[string]slog.Value{}
	for _, a := range h.with {
		attrs[a.Key] = a.Value
	}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value; return true })
	h.mu.Lock()
	*h.seen = append(*h.seen, attrs)
	h.mu.Unlock()
	return nil
}
func (h fetchWarnings) WithAttrs(as []slog.Attr) slog.Handler {
	h.with = append(append([]slog.Attr(nil), h.with...), as...)
	return h
}
func (h fetchWarnings) WithGroup(string) slog.Handler { return h }

// corruptBatch is a fetch response carrying, for every partition asked, a
// record batch at the offset asked whose CRC does not match its bytes.
func corruptBatch(req *kmsg.FetchRequest) *kmsg.FetchResponse {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			rb := kmsg.NewRecordBatch()
			rb.FirstOffset, rb.Magic, rb.NumRecords = rp.FetchOffset, 2, 1
			rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = -1, -1, -1
			rb.Records = []byte{0x10, 0, 0, 0, 1, 'x', 0, 0}
			rb.CRC = 0x0bad
			rb.Length = int32(len(rb.AppendTo(nil)) - 12)
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = rp.FetchOffset+1, rp.FetchOffset+1, 0
			sp.RecordBatches = rb.AppendTo(nil)
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// TestCorruptBatchNamesItsOffset: a record batch whose CRC does not match
// (a damaged log segment) stops its partition there: the Kafka client
// reports it on every fetch. The warning names the offset the partition
// is stopped at, beside its topic and partition: it said only "encoded crc
// … does not match calculated crc …", and where the log is damaged was to
// be guessed.
func TestCorruptBatchNamesItsOffset(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", [][2]string{{"k", "0"}, {"k", "1"}, {"k", "2"}})
	var corrupt atomic.Bool
	var at atomic.Int64 // the offset of the corrupt batch answered last
	e.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		if !corrupt.Load() {
			return nil, nil, false
		}
		fr := req.(*kmsg.FetchRequest)
		for _, rt := range fr.Topics {
			for _, rp := range rt.Partitions {
				at.Store(rp.FetchOffset)
			}
		}
		return corruptBatch(fr), nil, true
	})
	var mu sync.Mutex
	var seen []map[string]slog.Value
	b := newBackend(t, nil)
	tr, err := ktransfer.New(e.config(t, 0, module("m", "t", b.URL)), slog.New(fetchWarnings{mu: &mu, seen: &seen}))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "the 3 records pushed", 10*time.Second, func() bool { return len(b.got()) == 3 })
	corrupt.Store(true)
	e.produce(t, "t", [][2]string{{"k", "3"}})
	waitFor(t, "the corrupt batch reported", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0
	})
	mu.Lock()
	w := seen[0]
	mu.Unlock()
	t.Logf("warning: %v", w)
	if w["topic"].String() != "t" || w["partition"].String() != "0" {
		t.Errorf("the warning names topic %q partition %q, want t and 0", w["topic"], w["partition"])
	}
	// A fetch in flight when the batches turned corrupt may have brought
	// record 3: the partition stops where the corrupt batch is.
	if off, ok := w["offset"]; !ok || off.String() != strconv.FormatInt(at.Load(), 10) {
		t.Errorf("the warning names offset %v (present: %v), want %d, where the partition is stopped", off, ok, at.Load())
	}
}
