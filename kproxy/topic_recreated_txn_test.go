package kproxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestAtomicBatchToRecreatedTopic: the transactional clients hold the id
// of a topic that was deleted and created again; the brokers refuse their
// records of it (UNKNOWN_TOPIC_ID). kproxy never purges the topic from a
// transactional client (a purge landing in its next transaction drops
// that transaction's partitions from its commit): it replaces the client
// when the refused batch is aborted. Atomic batches to the re-created
// topic are then written within seconds, each answered 503 (not written)
// or 404 (the topic not yet created again, as kproxy last saw it) until
// then, and every batch answered 200 is readable by a read_committed
// consumer.
func TestAtomicBatchToRecreatedTopic(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.TransactionalProducers = 2
		cfg.ProduceTimeoutMs = 2000
	})
	batch := func(v string) batchAnswer {
		return p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, v)}}))
	}
	// Both transactional clients made, each holding the topic's id.
	done := make(chan batchAnswer, 2)
	for i := range 2 {
		go func() { done <- batch(fmt.Sprintf("before-%d", i)) }()
	}
	for range 2 {
		if a := <-done; a.code != 200 {
			t.Fatalf("atomic batch before the topic was re-created: %v", a)
		}
	}

	adm := kadm.NewClient(kafkatest.Client(t, c, kafkaconf.Default()))
	ctx := context.Background()
	if _, err := adm.DeleteTopics(ctx, topic); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}

	var written []string
	codes := map[int]int{}
	start := time.Now()
	for n := 0; len(written) < 3; n++ {
		if time.Since(start) > 15*time.Second {
			t.Fatalf("re-created topic: %d atomic batches written within 15 s, want 3: answers %v", len(written), codes)
		}
		v := fmt.Sprintf("after-%03d", n)
		a := batch(v)
		codes[a.code]++
		switch a.code {
		case 200:
			written = append(written, v)
		case 503, 404:
		default:
			t.Fatalf("atomic batch to the re-created topic: %v; want 200, 503 (not written) or 404", a)
		}
	}
	t.Logf("re-created topic: 3 atomic batches written after %v; answers %v", time.Since(start).Round(time.Millisecond), codes)

	rc := kafkatest.Client(t, c, kafkaconf.Default(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	seen, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got := map[string]int{}
	for seen.Err() == nil && len(got) < len(written) {
		rc.PollFetches(seen).EachRecord(func(r *kgo.Record) {
			var v string
			if err := msgpack.Unmarshal(r.Value, &v); err == nil {
				got[v]++
			}
		})
	}
	for _, v := range written {
		if got[v] != 1 {
			t.Errorf("atomic batch %q answered 200: read %d times by a read_committed consumer, want once", v, got[v])
		}
	}
}
