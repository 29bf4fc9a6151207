package ktransfer_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestMissingDeadLetterTopicWarnedAtStart: a module whose dead_letter_topic
// does not exist (a typo, a topic not created yet) starts, and its records
// given up wait for the topic, retried and not committed. That was learnt
// at the first record given up, perhaps long after a deploy; the start
// says it, naming the module and the topic. A topic that exists is not
// warned of.
func TestMissingDeadLetterTopicWarnedAtStart(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	b := newBackend(t, nil)
	there, absent := module("there", "t", b.URL), module("absent", "t", b.URL)
	there.DeadLetterTopic, absent.DeadLetterTopic = "dlq", "dlq-typo"
	var logs runtest.Log
	tr, err := ktransfer.New(e.config(t, 0, there, absent), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "the missing dead-letter topic warned of", 20*time.Second, func() bool {
		return strings.Contains(logs.String(), "dead_letter_topic=dlq-typo")
	})
	time.Sleep(500 * time.Millisecond) // the other module's check, had it warned
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "dead_letter_topic=dlq-typo") && (!strings.Contains(line, "level=WARN") || !strings.Contains(line, "module=absent") || !strings.Contains(line, "does not exist")) {
			t.Errorf("the warning: %s; want a WARN naming module absent and saying the topic does not exist", line)
		}
		if strings.Contains(line, "dead_letter_topic=dlq ") && strings.Contains(line, "does not exist") {
			t.Errorf("an existing dead-letter topic warned of: %s", line)
		}
	}
}
