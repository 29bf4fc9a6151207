package ktransfer_test

import (
	"context"
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

	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := adm.DeleteTopics(ctx, "t"); err != nil || res.Error() != nil {
		t.Fatalf("delete topic: %v %v", err, res.Error())
	}
	waitFor(t, "the topic gone", 10*time.Second, func() bool {
		d, err := adm.ListTopics(ctx, "t")
		return err == nil && !d.Has("t")
	})
	if res, err := adm.CreateTopic(ctx, 1, -1, nil, "t"); err != nil || res.Err != nil {
		t.Fatalf("create topic again: %v %v", err, res.Err)
	}
	// More records than the deleted topic had: reading the new topic from
	// the stored offset would skip the first three.
	e.produce(t, "t", [][2]string{{"k", "new0"}, {"k", "new1"}, {"k", "new2"}, {"k", "new3"}, {"k", "new4"}})

	waitFor(t, "the new topic's records pushed", 17*time.Second, func() bool { return len(b.got()) >= 8 })
	var bodies []string
	for _, p := range b.got() {
		bodies = append(bodies, p.body)
	}
	if got, want := strings.Join(bodies, " "), "old0 old1 old2 new0 new1 new2 new3 new4"; got != want {
		t.Errorf("pushed %s, want %s", got, want)
	}
	waitFor(t, "the new topic's end committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "5" })
}
