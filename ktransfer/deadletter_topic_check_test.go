package ktransfer_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestDeadLetterTopicCheckedAtStart: a module whose dead_letter_topic
// does not exist (a typo, a topic not created yet) starts, and its records
// given up wait for the topic, retried and not committed. That was learnt
// at the first record given up, perhaps long after a deploy; the start
// says it, naming the module and the topic. Likewise a compacted one
// (cleanup.policy compact): Kafka refuses a dead letter without a key, so
// a record read without one and given up was dropped (only logged and
// counted), and compaction keeps only each key's latest dead letter — the
// first anyone heard of it was a record dropped. A topic that exists, not
// compacted, is not warned of.
func TestDeadLetterTopicCheckedAtStart(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1},
		kafkatest.Topic{Name: "dlqc", Partitions: 1})
	adm := kadm.NewClient(kafkatest.Client(t, e.kafka, kafkaconf.Default()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "cleanup.policy", Value: kadm.StringPtr("compact,delete")}}, "dlqc")
	if err == nil {
		_, err = resp.On("dlqc", nil)
	}
	if err != nil {
		t.Fatalf("set-up: make dlqc compacted: %v", err)
	}
	b := newBackend(t, nil)
	there, absent, compacted := module("there", "t", b.URL), module("absent", "t", b.URL), module("compacted", "t", b.URL)
	there.DeadLetterTopic, absent.DeadLetterTopic, compacted.DeadLetterTopic = "dlq", "dlq-typo", "dlqc"
	var logs runtest.Log
	tr, err := ktransfer.New(e.config(t, 0, there, absent, compacted), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "the missing and the compacted dead-letter topics warned of", 20*time.Second, func() bool {
		return strings.Contains(logs.String(), "dead_letter_topic=dlq-typo") && strings.Contains(logs.String(), "dead_letter_topic=dlqc")
	})
	time.Sleep(500 * time.Millisecond) // the other module's check, had it warned
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "dead_letter_topic=dlq-typo") && (!strings.Contains(line, "level=WARN") || !strings.Contains(line, "module=absent") || !strings.Contains(line, "does not exist")) {
			t.Errorf("the warning: %s; want a WARN naming module absent and saying the topic does not exist", line)
		}
		if strings.Contains(line, "dead_letter_topic=dlqc") && (!strings.Contains(line, "level=WARN") || !strings.Contains(line, "module=compacted") ||
			!strings.Contains(line, "compacted") || !strings.Contains(line, "without a key")) {
			t.Errorf("the warning: %s; want a WARN naming module compacted and saying the topic is compacted (no dead letter without a key)", line)
		}
		if strings.Contains(line+" ", "dead_letter_topic=dlq ") {
			t.Errorf("an existing, not compacted dead-letter topic warned of: %s", line)
		}
	}
}

// TestDeadLetterTopicCreatedOnUse: where the brokers create topics on use
// (auto.create.topics.enable), a missing dead_letter_topic was promised
// to be created at the first dead letter. Nothing asked for it: the
// question of its max.message.bytes (DescribeConfigs) creates no topic,
// and no write is made before it is answered. The record given up waited
// for ever, its partition's commit point with it. Its metadata is asked
// for now with auto-creation allowed: the topic is created, the dead
// letter written and the offset committed past the record.
func TestDeadLetterTopicCreatedOnUse(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}}, kfake.AllowAutoTopicCreation())
	z := zktest.Start(t)
	e := &env{kafka: k, zkAdr: z.Addr, conn: envConn(t, z.Addr), kc: kafkaconf.Default()}
	b := newBackend(t, func(n int, p push, w http.ResponseWriter) {
		if p.offset == "1" {
			w.WriteHeader(400) // given up at once: a dead letter
		}
	})
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dlq-new"
	e.produce(t, "t", [][2]string{{"a", "{}"}, {"b", "{}"}, {"c", "{}"}})
	tr, err := ktransfer.New(e.config(t, 0, m), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "offset 3 stored (the record given up dead-lettered into a topic created on use)", 15*time.Second, func() bool {
		return e.storedOffset(t, "m", "t", 0) == "3"
	})
	dead := kafkatest.ReadAll(t, e.kafka, e.kc, "dlq-new")
	if len(dead) != 1 || headersOf(dead[0])["ktransfer-offset"] != "1" {
		t.Errorf("%d dead letters in dlq-new, want the one of offset 1", len(dead))
	}
}
