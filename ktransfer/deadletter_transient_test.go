package ktransfer_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestTransientUnknownTopicIDLosesNoDeadLetter: the brokers answer the
// dead-letter writes with UNKNOWN_TOPIC_ID for a while although the
// dead-letter topic is unchanged. The dead letter is written once they
// take it again, and is in the topic: forgetting the topic in the client
// would restart its sequence numbers, and a broker takes a batch with the
// sequence numbers of one it already has for a duplicate, answering
// success without appending it.
func TestTransientUnknownTopicIDLosesNoDeadLetter(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dl", Partitions: 1})
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dl"
	e.start(t, m)
	e.produce(t, "t", [][2]string{{"k", "first"}})
	waitFor(t, "the first record dead-lettered", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "1" })

	// The next 6 writes to the dead-letter topic (kgo gives a write up
	// after four such answers in a row).
	// Produce v13 names a topic by its id only.
	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(ctx, "dl")
	if err != nil || topics["dl"].Err != nil {
		t.Fatalf("the dead-letter topic's id: %v %v", err, topics["dl"].Err)
	}
	dl := [16]byte(topics["dl"].ID)
	var left atomic.Int32
	left.Store(6)
	e.kafka.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		e.kafka.KeepControl()
		if len(pr.Topics) == 0 || pr.Topics[0].Topic != "dl" && pr.Topics[0].TopicID != dl || left.Add(-1) < 0 {
			return nil, nil, false
		}
		return kafkatest.ProduceError(pr, kerr.UnknownTopicID.Code), nil, true
	})
	e.produce(t, "t", [][2]string{{"k", "second"}})
	waitFor(t, "the second record dead-lettered", 17*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "2" })
	if end := kafkatest.EndOffsets(t, e.kafka, e.kc, "dl"); end[0] != 2 {
		t.Errorf("the dead-letter topic ends at %d, want 2: a dead letter answered as written is not in it", end[0])
	}
}
