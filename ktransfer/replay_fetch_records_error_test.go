package ktransfer_test

import (
	"context"
	"encoding/binary"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestReplayPushesRecordsFetchedWithAnError: a fetch of the dead-letter
// topic answers good batches followed by a corrupt one (its checksum
// wrong). Kafka's client hands the good batches' records and the error
// together, and reads on after those records. The replay dropped the
// records when it saw the error: never pushed, never counted, and the
// replay ended well. They are pushed now, the error noted as before.
func TestReplayPushesRecordsFetchedWithAnError(t *testing.T) {
	e, b, m := dlqModule(t, nil)
	deadLetters := func(from, to int) []*kgo.Record {
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			recs = append(recs, &kgo.Record{Topic: "dlq", Key: []byte("k" + strconv.Itoa(i)), Value: []byte("v" + strconv.Itoa(i)), Headers: []kgo.RecordHeader{
				{Key: "ktransfer-module", Value: []byte("m")}, {Key: "ktransfer-topic", Value: []byte("t")},
				{Key: "ktransfer-partition", Value: []byte("0")}, {Key: "ktransfer-offset", Value: []byte(strconv.Itoa(i))}}})
		}
		return recs
	}
	e.produceRecords(t, deadLetters(0, 5)...) // one batch, offsets 0-4
	e.produceRecords(t, deadLetters(5, 10)...)

	// The partition's batches as the broker keeps them.
	cl := kafkatest.Client(t, e.kafka, e.kc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(cl).ListTopics(ctx, "dlq")
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes, req.SessionEpoch = -1, 100, 1, 1<<20, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = "dlq", topics["dlq"].ID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes, rp.CurrentLeaderEpoch, rp.LogStartOffset = 0, 0, 1<<20, -1, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("raw fetch: %v %v", resp, err)
	}
	raw := resp.Topics[0].Partitions[0].RecordBatches
	end := func(from int) int { // the end of the batch at from; 0 when there is none
		if len(raw) < from+12 {
			return 0
		}
		if to := from + 12 + int(binary.BigEndian.Uint32(raw[from+8:])); to <= len(raw) {
			return to
		}
		return 0
	}
	first := end(0)
	second := 0
	if first > 0 {
		second = end(first)
	}
	if second == 0 {
		t.Fatalf("raw fetch: %d bytes, want two whole batches", len(raw))
	}
	batches := append([]byte(nil), raw[:second]...)
	batches[second-1] ^= 0xff // the second batch's last byte: its checksum fails

	var answered atomic.Bool
	e.kafka.ControlKey(int16(kmsg.Fetch), func(r kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		fr := r.(*kmsg.FetchRequest)
		if answered.Load() || len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 || fr.Topics[0].Partitions[0].FetchOffset != 0 {
			return nil, nil, false
		}
		answered.Store(true)
		out := fr.ResponseKind().(*kmsg.FetchResponse)
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = fr.Topics[0].Topic, fr.Topics[0].TopicID
		sp := kmsg.NewFetchResponseTopicPartition()
		sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = 10, 10, 0
		sp.RecordBatches = batches
		st.Partitions = append(st.Partitions, sp)
		out.Topics = append(out.Topics, st)
		return out, nil, true
	})
	t.Cleanup(e.kafka.DropControl)
	var logs runtest.Log
	rep := replayLogging(t, e.config(t, 0, m), 60*time.Second, slog.New(slog.NewTextHandler(&logs, nil)))
	if !answered.Load() || !strings.Contains(logs.String(), "does not match calculated crc") {
		t.Fatalf("no fetch answered with the corrupt batch and taken with its checksum error; the replay's log:\n%s", logs.String())
	}
	if rep.Replayed != 10 || len(b.got()) != 10 {
		t.Errorf("replay: %v, %d pushes; want the 10 dead letters pushed (the 5 fetched with the corrupt batch's error too)", rep, len(b.got()))
	}
}
