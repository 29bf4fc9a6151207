package ktransfer_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRecreatedTopicIsPushed: a topic deleted and created again while a
// module reads it. The module's Kafka client knows the topic by the id of
// the deleted one; the records of the new topic are pushed all the same,
// from its first one (offset_out_of_range: oldest; the stored offset names
// records of the deleted topic), and the stored offset follows them.
func TestRecreatedTopicIsPushed(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", [][2]string{{"k", "old0"}, {"k", "old1"}, {"k", "old2"}})
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the first topic's records committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "3" })

	e.recreateTopic(t, "t", 1)
	// More records than the deleted topic had: reading the new topic from
	// the stored offset would skip the first three.
	e.produce(t, "t", [][2]string{{"k", "new0"}, {"k", "new1"}, {"k", "new2"}, {"k", "new3"}, {"k", "new4"}})

	// kgo reports UNKNOWN_TOPIC_ID after six failed fetches, about 10 s
	// with its backoff: 15 s more for a loaded host.
	waitFor(t, "the new topic's records pushed", 25*time.Second, func() bool { return len(b.got()) >= 8 })
	var bodies []string
	for _, p := range b.got() {
		bodies = append(bodies, p.body)
	}
	if got, want := strings.Join(bodies, " "), "old0 old1 old2 new0 new1 new2 new3 new4"; got != want {
		t.Errorf("pushed %s, want %s", got, want)
	}
	waitFor(t, "the new topic's end committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "5" })
}

// startDeadLettering starts module m on topic t with the dead-letter
// topic dl and a backend that refuses every push for good (400): each
// record of t is given up on and written to dl.
func startDeadLettering(t *testing.T) (*env, *backend) {
	t.Helper()
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dl", Partitions: 1})
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dl"
	e.start(t, m)
	return e, b
}

// recreateTopic deletes topic, waits until the brokers no longer list it
// and creates it again with partitions partitions (a new topic id). The
// env's readers fetch without fetch sessions from then on.
func (e *env) recreateTopic(t *testing.T, topic string, partitions int32) {
	t.Helper()
	if !e.sessionsEnded {
		// As Kafka does, the deleted topic's id is answered
		// UNKNOWN_TOPIC_ID to a reader, whose fetch session would
		// otherwise be served the new topic, unseen (FetchWithoutSessions).
		kafkatest.FetchWithoutSessions(e.kafka)
		e.sessionsEnded = true
	}
	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res, err := adm.DeleteTopics(ctx, topic); err != nil || res.Error() != nil {
		t.Fatalf("delete topic %s: %v %v", topic, err, res.Error())
	}
	waitFor(t, "topic "+topic+" gone", 10*time.Second, func() bool {
		d, err := adm.ListTopics(ctx, topic)
		return err == nil && !d.Has(topic)
	})
	if res, err := adm.CreateTopic(ctx, partitions, -1, nil, topic); err != nil || res.Err != nil {
		t.Fatalf("create topic %s again: %v %v", topic, err, res.Err)
	}
}

// createTopic creates topic with partitions, as a deploy does while
// the processes run.
func (e *env) createTopic(t *testing.T, topic string, partitions int32) {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := adm.CreateTopic(ctx, partitions, 1, nil, topic); err != nil || res.Err != nil {
		t.Fatalf("create topic %s: %v %v", topic, err, res.Err)
	}
}

// topicID is topic's id as the brokers give it.
func (e *env) topicID(t *testing.T, topic string) [16]byte {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	topics, err := adm.ListTopics(ctx, topic)
	if err != nil || topics[topic].Err != nil {
		t.Fatalf("topic %s's id: %v %v", topic, err, topics[topic].Err)
	}
	return [16]byte(topics[topic].ID)
}
