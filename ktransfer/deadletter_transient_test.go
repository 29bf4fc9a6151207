package ktransfer_test

import (
	"sync/atomic"
	"testing"
	"time"

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
	e, _ := startDeadLettering(t)
	e.produce(t, "t", [][2]string{{"k", "first"}})
	waitFor(t, "the first record dead-lettered", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "1" })

	unknownTopicIDAt(t, e, "dl")
	e.produce(t, "t", [][2]string{{"k", "second"}})
	waitFor(t, "the second record dead-lettered", 25*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "2" })
	if end := kafkatest.EndOffsets(t, e.kafka, e.kc, "dl"); end[0] != 2 {
		t.Errorf("the dead-letter topic ends at %d, want 2: a dead letter answered as written is not in it", end[0])
	}
}

// unknownTopicIDAt answers the next 6 writes to topic UNKNOWN_TOPIC_ID, the
// topic unchanged (a broker behind): kgo gives a write up after four such
// answers in a row.
func unknownTopicIDAt(t *testing.T, e *env, topic string) {
	t.Helper()
	id := e.topicID(t, topic) // Produce v13 names a topic by its id only
	var left atomic.Int32
	left.Store(6)
	e.kafka.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		e.kafka.KeepControl()
		if len(pr.Topics) == 0 || pr.Topics[0].Topic != topic && pr.Topics[0].TopicID != id || left.Add(-1) < 0 {
			return nil, nil, false
		}
		return kafkatest.ProduceError(pr, kerr.UnknownTopicID.Code), nil, true
	})
}
