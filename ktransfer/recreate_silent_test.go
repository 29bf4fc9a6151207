package ktransfer_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRecreatedTopicFoundWhenFetchesReportNothing: a topic deleted and
// created again while a module reads it, and the brokers answer the
// fetches naming the deleted topic's id INCONSISTENT_TOPIC_ID (a broker
// whose log of the partition is the new topic's) instead of
// UNKNOWN_TOPIC_ID. kgo retries that answer by itself and never reports
// it, and it never takes the new id on its own: the module read nothing
// more, for good, and logged nothing. It finds the topic created again by
// its id all the same, and pushes the new topic's records.
func TestRecreatedTopicFoundWhenFetchesReportNothing(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", [][2]string{{"k", "old0"}, {"k", "old1"}, {"k", "old2"}})
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the first topic's records committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "3" })

	_, recreating := answerInconsistentTopicID(t, e)
	pushedAfterRecreation(t, e, b, recreating, 3)
}

// TestRecreatedTopicFoundWhenNothingWasReadSinceTheStart is the same with a
// process that read nothing of the topic before it was created again (it
// started at the end of the topic): it knows no id the topic was read by
// from a fetch.
func TestRecreatedTopicFoundWhenNothingWasReadSinceTheStart(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", [][2]string{{"k", "old0"}, {"k", "old1"}, {"k", "old2"}})
	b := newBackend(t, nil)
	first := e.start(t, module("m", "t", b.URL))
	waitFor(t, "the first topic's records committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "3" })
	if err := first.stop(); err != nil {
		t.Fatalf("stop the first process: %v", err)
	}

	fetching, recreating := answerInconsistentTopicID(t, e)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the second process fetching the topic", 10*time.Second, fetching.Load)
	pushedAfterRecreation(t, e, b, recreating, 3)
}

// answerInconsistentTopicID answers every fetch naming topic t's present
// id INCONSISTENT_TOPIC_ID once recreating is set (the topic is about to
// be deleted and created again), and ends the fetch sessions then: a
// fetch in a session leaves out the partitions whose offset did not
// change. fetching is set once a fetch named that id before.
func answerInconsistentTopicID(t *testing.T, e *env) (fetching, recreating *atomic.Bool) {
	t.Helper()
	old := e.topicID(t, "t")
	fetching, recreating = new(atomic.Bool), new(atomic.Bool)
	e.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		fr := req.(*kmsg.FetchRequest)
		named := false
		for _, rt := range fr.Topics {
			named = named || rt.TopicID == old
		}
		switch {
		case !recreating.Load():
			if named {
				fetching.Store(true)
			}
			return nil, nil, false
		case named:
			return kafkatest.FetchError(fr, kerr.InconsistentTopicID.Code), nil, true
		}
		if end := kafkatest.EndFetchSession(fr); end != nil && len(fr.Topics) == 0 {
			return end, nil, true
		}
		return nil, nil, false
	})
	return fetching, recreating
}

// pushedAfterRecreation creates topic t again with five records (setting
// recreating first) and waits until they are pushed after the before
// first ones and committed.
func pushedAfterRecreation(t *testing.T, e *env, b *backend, recreating *atomic.Bool, before int) {
	t.Helper()
	recreating.Store(true)
	e.recreateTopic(t, "t", 1)
	e.produce(t, "t", [][2]string{{"k", "new0"}, {"k", "new1"}, {"k", "new2"}, {"k", "new3"}, {"k", "new4"}})
	waitFor(t, "the new topic's records pushed", 40*time.Second, func() bool { return len(b.got()) >= before+5 })
	for i, p := range b.got()[before:] {
		if want := "new" + string(rune('0'+i)); p.body != want {
			t.Errorf("push %d after the recreation is %s, want %s", i, p.body, want)
		}
	}
	waitFor(t, "the new topic's end committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "5" })
}
