package ktransfer_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestAddedPartitionPushedFromItsFirstRecord: with start_from: newest, a
// partition added to the topic while the module runs is pushed from its
// first record. The module finds the new partition some time after it was
// created (it checks the topic's partitions every few seconds); records
// written to it meanwhile came after the module started and must not be
// skipped as if they were history before the start.
func TestAddedPartitionPushedFromItsFirstRecord(t *testing.T) {
	e, b, _, _ := startNewestOnHistory(t)
	addPartition(t, e, "p1-0", "p1-1")

	// The partitions are checked every 10 s: 15 s more for a loaded host.
	waitFor(t, "the new partition's start stored", 25*time.Second, func() bool { return e.storedOffset(t, "m", "t", 1)[0] != '<' })
	waitFor(t, "the new partition committed at its end", 30*time.Second, func() bool { return e.storedOffset(t, "m", "t", 1) == "2" })
	var bodies []string
	for _, p := range b.got() {
		bodies = append(bodies, p.body)
	}
	if !slices.Equal(bodies, []string{"p1-0", "p1-1"}) {
		t.Errorf("pushed %v, want the new partition's two records", bodies)
	}
}

// startNewestOnHistory starts module m reading topic t (one partition,
// one record of history) from its newest record, pushing to b, and waits
// until partition 0's start is stored.
func startNewestOnHistory(t *testing.T) (*env, *backend, ktransfer.Module, *running) {
	t.Helper()
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", [][2]string{{"k", "history"}})
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.StartFrom = "newest"
	r := e.start(t, m)
	waitFor(t, "partition 0's start stored", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "1" })
	return e, b, m, r
}

// addPartition adds partition 1 to topic t and writes values to it, in
// order, all of key "a".
func addPartition(t *testing.T, e *env, values ...string) {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := adm.CreatePartitions(ctx, 1, "t"); err != nil || res.Error() != nil {
		t.Fatalf("add a partition: %v %v", err, res.Error())
	}
	manual := kafkatest.Client(t, e.kafka, e.kc, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for _, v := range values {
		recs = append(recs, &kgo.Record{Topic: "t", Partition: 1, Key: []byte("a"), Value: []byte(v)})
	}
	if err := manual.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce to the new partition: %v", err)
	}
}
