package ktransfer_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// staleMetadata answers, while on is set, every metadata request that
// names only topic as a broker that does not know the topic yet would:
// UNKNOWN_TOPIC_OR_PARTITION. The same broker answers fetches (and writes)
// by the topic's id UNKNOWN_TOPIC_ID: that is why those answers are
// transient. With every above 1, only every every-th such request reaches
// that broker; the others reach brokers that are up to date.
func staleMetadata(t *testing.T, e *env, topic string, on *atomic.Bool, every int) {
	t.Helper()
	topicMetadataError(t, e, topic, kerr.UnknownTopicOrPartition, on, every)
}

// topicMetadataError answers, while on is set, every metadata request
// that names only topic with code as the topic's error; with every above
// 1, only every every-th such request.
func topicMetadataError(t *testing.T, e *env, topic string, code *kerr.Error, on *atomic.Bool, every int) {
	var asked atomic.Int64
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, kafkatest.Client(t, e.kafka, e.kc))
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	brokers := resp.Brokers
	e.kafka.ControlKey(int16(kmsg.Metadata), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		mr := kr.(*kmsg.MetadataRequest)
		if !on.Load() || len(mr.Topics) != 1 || mr.Topics[0].Topic == nil || *mr.Topics[0].Topic != topic {
			return nil, nil, false
		}
		if every > 1 && asked.Add(1)%int64(every) != 0 {
			return nil, nil, false // another broker, up to date
		}
		out := mr.ResponseKind().(*kmsg.MetadataResponse)
		out.Brokers = brokers
		st := kmsg.NewMetadataResponseTopic()
		st.Topic = kmsg.StringPtr(topic)
		st.ErrorCode = code.Code
		out.Topics = append(out.Topics, st)
		return out, nil, true
	})
}

// TestTransientUnknownTopicIDStaleMetadataRestartsNothing: a broker that
// does not know the topic yet answers the module's fetches UNKNOWN_TOPIC_ID
// for a while, and the module's look-up of the topic reaches it too (the
// topic is missing from its metadata). The topic was neither deleted nor
// created again: the module goes on from where it was, without pushing
// the topic again from its oldest record.
func TestTransientUnknownTopicIDStaleMetadataRestartsNothing(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	var recs [][2]string
	for i := range 5 {
		recs = append(recs, [2]string{"k", strconv.Itoa(i)})
	}
	e.produce(t, "t", recs)
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the first records committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "5" })

	var stale atomic.Bool
	staleMetadata(t, e, "t", &stale, 1)
	var left atomic.Int32
	left.Store(8)
	e.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fr := req.(*kmsg.FetchRequest)
		if len(fr.Topics) == 0 || left.Add(-1) < 0 {
			return nil, nil, false
		}
		e.kafka.KeepControl()
		stale.Store(true)
		return kafkatest.FetchError(fr, kerr.UnknownTopicID.Code), nil, true
	})
	// The broker catches up once the injected fetch answers are used
	// (20 s at most).
	waitFor(t, "the broker caught", 10*time.Second, stale.Load)
	for end := time.Now().Add(20 * time.Second); left.Load() >= 0 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // the last answer's look-up done
	left.Store(-1000)
	stale.Store(false)

	e.produce(t, "t", [][2]string{{"k", "5"}})
	waitFor(t, "the next record committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "6" })
	var bodies []string
	for _, p := range b.got() {
		bodies = append(bodies, p.body)
	}
	if len(bodies) != 6 || bodies[5] != "5" {
		t.Errorf("pushed %v, want 0 1 2 3 4 5, each once", bodies)
	}
}

// TestTransientUnknownTopicIDStaleMetadataLosesNoDeadLetter: a broker
// that does not know the dead-letter topic yet answers its writes
// UNKNOWN_TOPIC_ID for a while, and the look-up of the topic reaches it
// too. The dead letter is written once the brokers take it, and is in the
// topic: the topic was not deleted, and forgetting it in the client would
// restart its sequence numbers (a broker takes the retry for a duplicate
// of the first dead letter and answers success without appending it).
func TestTransientUnknownTopicIDStaleMetadataLosesNoDeadLetter(t *testing.T) {
	e, _ := startDeadLettering(t)
	e.produce(t, "t", [][2]string{{"k", "first"}})
	waitFor(t, "the first record dead-lettered", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "1" })

	dl := e.topicID(t, "dl")
	var stale atomic.Bool
	staleMetadata(t, e, "dl", &stale, 2)
	var left atomic.Int32
	left.Store(6)
	e.kafka.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		e.kafka.KeepControl()
		if len(pr.Topics) == 0 || pr.Topics[0].Topic != "dl" && pr.Topics[0].TopicID != dl {
			return nil, nil, false
		}
		switch n := left.Add(-1); {
		case n < 0:
			return nil, nil, false
		case n <= 2:
			// kgo gives the write up after four such answers in a row:
			// the module's look-up comes next, while the broker is behind.
			stale.Store(true)
		}
		return kafkatest.ProduceError(pr, kerr.UnknownTopicID.Code), nil, true
	})
	e.produce(t, "t", [][2]string{{"k", "second"}})
	waitFor(t, "the broker behind", 10*time.Second, stale.Load)
	time.Sleep(3 * time.Second) // the broker catches up
	left.Store(-1000)
	stale.Store(false)
	waitFor(t, "the second record dead-lettered", 40*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "2" })
	if end := kafkatest.EndOffsets(t, e.kafka, e.kc, "dl"); end[0] != 2 {
		t.Errorf("the dead-letter topic ends at %d, want 2: a dead letter answered as written is not in it", end[0])
	}
}
