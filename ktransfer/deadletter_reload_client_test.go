package ktransfer_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestReloadClosesTheClientOfADeadLetterTopicLeft: a reload moves module
// m's dead letters from dl1 to dl2. dl1's Kafka client (its connections,
// its metadata refreshes) is closed: before, it ran until the process
// stopped, one more for each topic a reload left.
func TestReloadClosesTheClientOfADeadLetterTopicLeft(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dl1", Partitions: 1}, kafkatest.Topic{Name: "dl2", Partitions: 1})
	bk := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	c := e.reloadConf(t)
	c.enable(t, "", "m")
	c.module(t, "m", "t", "m", bk.URL, "dead_letter_topic: dl1\n")
	r := startConf(t, c, nil)
	produceN(t, e, 0, 1)
	waitFor(t, "the first record dead-lettered into dl1", 15*time.Second, func() bool { return kafkatest.Records(t, e.kafka, e.kc, "dl1") == 1 })

	c.module(t, "m", "t", "m", bk.URL, "dead_letter_topic: dl2\n")
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	produceN(t, e, 0, 1)
	waitFor(t, "the second record dead-lettered into dl2", 15*time.Second, func() bool { return kafkatest.Records(t, e.kafka, e.kc, "dl2") == 1 })
	waitFor(t, "only dl2's client left", 5*time.Second, func() bool {
		return slices.Equal(ktransfer.DeadLetterClientTopics(r.tr), []string{"dl2"})
	})
}
