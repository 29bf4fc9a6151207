package ktransfer_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// hangDeadLetters holds every produce request to topic dlq of e until the
// returned let is called (idempotent, also at cleanup), then lets the
// broker handle it: the dead letter is appended late. hung counts the
// requests held.
func hangDeadLetters(t *testing.T, e *env) (hung *atomic.Int64, let func()) {
	t.Helper()
	id := topicID(t, e, "dlq")
	hold := make(chan struct{})
	var once sync.Once
	let = func() { once.Do(func() { close(hold) }) }
	t.Cleanup(let)
	hung = &atomic.Int64{}
	e.kafka.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			if tp.Topic == "dlq" || tp.TopicID == id {
				hung.Add(1)
				e.kafka.SleepControl(func() { <-hold })
				break
			}
		}
		return nil, nil, false
	})
	return hung, let
}

// topicID is topic's id, as the brokers of e give it (a produce request
// names a topic by it from version 13 on).
func topicID(t *testing.T, e *env, topic string) [16]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topics, err := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc)).ListTopics(ctx, topic)
	if err != nil || topics[topic].Err != nil {
		t.Fatalf("look %s up: %v %v", topic, err, topics[topic].Err)
	}
	return [16]byte(topics[topic].ID)
}

// TestReleaseEndsHungDeadLetterWrite: a process with worker_num 2 holds
// both partitions of t; its backend refuses partition 1's record for good
// (400), and the broker holds the dead-letter write without answering. A
// second process joins and partition 1 moves to it, where the backend
// takes the record. The release must end the dead-letter write at
// shutdown_timeout_ms, its record uncommitted: the worker is given back
// (two keys of partition 0 are then pushed at once), and when the broker
// appends the held dead letter after all, the first process does not count
// as given up a record the next owner pushed. Before, the worker stayed in
// the write as long as the broker held it (kgo waits for the answer of an
// idempotent write it sent, whatever its context), and counted the record
// in ktransfer_failed_total once the late dead letter was written.
func TestReleaseEndsHungDeadLetterWrite(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 2}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	hung, let := hangDeadLetters(t, e)
	at := newTwoAtOnce() // two pushes of partition 0 in flight at once
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		switch {
		case strings.HasPrefix(p.path, "/b/"):
			return // the next owner's backend takes it
		case p.partition == "1":
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		at.hold()
	})
	first := module("m", "t", b.URL)
	first.Protocol.URI = "/a/{#TOPIC}?key={#KEY}"
	first.WorkerNum = 2
	first.DeadLetterTopic = "dlq"
	cfg := e.config(t, 0, first)
	cfg.ShutdownTimeoutMs = 300
	cfg.AdminAddr = "127.0.0.1:0"
	tr, err := ktransfer.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	admin := "http://" + tr.AdminAddr().String()
	waitFor(t, "the first process holding both partitions", 30*time.Second, func() bool { return len(tr.Status()[0].Partitions) == 2 })
	writeKeys(t, e, 1, []string{"h"})
	waitFor(t, "the dead-letter write held by the broker", 30*time.Second, func() bool { return hung.Load() >= 1 })

	second := module("m", "t", b.URL)
	second.Protocol.URI = "/b/{#TOPIC}?key={#KEY}"
	e.start(t, second)
	waitFor(t, "partition 1's record pushed by the second process", 30*time.Second, func() bool {
		for _, p := range b.got() {
			if strings.HasPrefix(p.path, "/b/") && p.partition == "1" {
				return true
			}
		}
		return false
	})
	if parts := tr.Status()[0].Partitions; len(parts) != 1 {
		t.Fatalf("first process holds %+v after the hand-over, want partition 0 alone", parts)
	}
	writeKeys(t, e, 0, []string{"x", "y"})
	select {
	case <-at.both:
	case <-time.After(8 * time.Second):
		t.Error("partition 0's two keys were never pushed at once with worker_num 2: a worker is still held by the released partition's dead-letter write")
	}

	let()
	waitFor(t, "the held dead letter appended and counted as written", 30*time.Second, func() bool {
		return kafkatest.Records(t, e.kafka, e.kc, "dlq") == 1 && metricValue(t, admin, `ktransfer_dead_lettered_total{module="m"}`) == "1"
	})
	if got := metricValue(t, admin, `ktransfer_failed_total{module="m"}`); got != "0" {
		t.Errorf("first process's ktransfer_failed_total %s for a record the next owner pushed, want 0", got)
	}
}

// TestReloadEndsHungDeadLetterWrite: a module whose backend refuses its one
// record for good (400) is restarted by a reload while the broker holds
// the record's dead-letter write. The old run must end the write at
// shutdown_timeout_ms, its record uncommitted, and stop then, nothing left
// to cut short; once the broker appends the held write and the new run's,
// the record is counted as given up once (both dead letters counted as
// written). Before, the old run's worker stayed in the write: the run was
// cut short two seconds later, leaving the worker in the write, and both
// runs counted the record in ktransfer_failed_total.
func TestReloadEndsHungDeadLetterWrite(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	hung, let := hangDeadLetters(t, e)
	bk := newBackend(t, func(_ int, _ push, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	produceN(t, e, 0, 1)
	c := e.reloadConf(t)
	c.admin, c.shutdownMs = "127.0.0.1:0", 300
	c.enable(t, "", "m")
	c.module(t, "m", "t", "m", bk.URL, "dead_letter_topic: dlq\n")
	var logs runtest.Log
	r := startConf(t, c, slog.New(slog.NewTextHandler(&logs, nil)))
	admin := "http://" + r.tr.AdminAddr().String()
	waitFor(t, "the dead-letter write held by the broker", 30*time.Second, func() bool { return hung.Load() >= 1 })

	c.module(t, "m", "t", "m", bk.URL, "dead_letter_topic: dlq\nbreaker_cooldown_ms: 12345\n") // changed: the module restarts
	start := time.Now()
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	t.Logf("reload with a dead-letter write held: %v (shutdown_timeout_ms 300)", time.Since(start).Round(time.Millisecond))
	if strings.Contains(logs.String(), "pushes still in progress at shutdown") {
		t.Error("the old run was cut short with a push still in progress: its dead-letter write outlived shutdown_timeout_ms")
	}

	let()
	waitFor(t, "both dead letters appended and counted as written", 30*time.Second, func() bool {
		return kafkatest.Records(t, e.kafka, e.kc, "dlq") == 2 && metricValue(t, admin, `ktransfer_dead_lettered_total{module="m"}`) == "2"
	})
	if got := metricValue(t, admin, `ktransfer_failed_total{module="m"}`); got != "1" {
		t.Errorf("ktransfer_failed_total %s for one record given up, want 1", got)
	}
}
