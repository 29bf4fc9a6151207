package ktransfer_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRecreatedDeadLetterTopicIsWritten: the dead-letter topic is deleted
// and created again while the module runs, after dead letters were
// written to it. A record given up later is written to the new topic, and
// the module moves on.
//
// Six dead letters are written before the deletion: kfake keeps a
// producer's sequence numbers per topic name and partition across a
// deletion (a broker drops them with the partition's log), and would take
// a first write to the new topic for a duplicate of one of the deleted
// topic's last five batches, answering with that batch's offset without
// appending it.
func TestRecreatedDeadLetterTopicIsWritten(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dl", Partitions: 1})
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dl"
	e.start(t, m)
	for i := range 6 {
		e.produce(t, "t", [][2]string{{"k", "old" + strconv.Itoa(i)}})
		waitFor(t, "a record dead-lettered into the first topic", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == strconv.Itoa(i+1) })
	}

	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := adm.DeleteTopics(ctx, "dl"); err != nil || res.Error() != nil {
		t.Fatalf("delete the dead-letter topic: %v %v", err, res.Error())
	}
	waitFor(t, "the dead-letter topic gone", 10*time.Second, func() bool {
		d, err := adm.ListTopics(ctx, "dl")
		return err == nil && !d.Has("dl")
	})
	if res, err := adm.CreateTopic(ctx, 1, -1, nil, "dl"); err != nil || res.Err != nil {
		t.Fatalf("create the dead-letter topic again: %v %v", err, res.Err)
	}

	e.produce(t, "t", [][2]string{{"k", "second"}})
	waitFor(t, "the second record dead-lettered into the new topic", 17*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "7" })
	if end := kafkatest.EndOffsets(t, e.kafka, e.kc, "dl"); end[0] != 1 {
		t.Errorf("the new dead-letter topic ends at %d, want 1 (the second record's dead letter)", end[0])
	}
}
