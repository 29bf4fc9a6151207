package kproxy_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestAcksAllAfterNotLeaderAppendNot503: at acks=-1 a leader appends a
// record's batch, then loses the leadership before the replicas
// acknowledged it and answers NOT_LEADER_OR_FOLLOWER; the new leader
// holds the batch. Every retry is refused (the election takes longer than
// produce_timeout_ms), and kgo fails the record at its deadline. It was
// answered 503, "not written", and it is in Kafka: a client that trusts
// 503 and moves on to other work has a record it believes not sent. It is
// answered 504 now (may have been written).
func TestAcksAllAfterNotLeaderAppendNot503(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 1500 })
	if a := p.post(t, "topic="+topic+"&key=k&acks=-1", unique(t, "first")); a.code != 200 {
		t.Fatalf("first record: %d %s", a.code, a.body)
	}
	f := kafkatest.NewFaults(t, c)
	f.AppendThen(1, kerr.NotLeaderForPartition.Code)
	end := f.Outage(kerr.NotLeaderForPartition.Code)
	body := unique(t, "appended")
	a := p.post(t, "topic="+topic+"&key=k&acks=-1", body)
	end()
	in := inKafka(t, c)[string(body)]
	if in != 1 {
		t.Fatalf("the fault did not append the record (in Kafka %d times): the test proves nothing; answer %d %s", in, a.code, a.body)
	}
	if a.code != 504 || !strings.Contains(a.body, "a leader may have refused its batch after taking it") {
		t.Errorf("record appended, then refused NOT_LEADER_OR_FOLLOWER past its deadline: %d %q; want 504 (may have been written)", a.code, strings.TrimSpace(a.body))
	}
}

// TestAcksAllNextRecordAfterGivenUpAppendWritten: the record after one kgo
// gave up at acks=-1 though a leader had appended it (as above) must be
// written when it is answered 200. kgo numbers a partition's batches for
// the broker's deduplication and, giving a batch up, numbers the next
// batch as the one given up: the broker took the next one, of as many
// records, for a retry of the appended batch and answered with that
// batch's offset, writing nothing. The record was answered 200 with the
// given-up record's offset and was never in Kafka.
func TestAcksAllNextRecordAfterGivenUpAppendWritten(t *testing.T) {
	c, p, f := acksAllAfterFirst(t)
	f.AppendThen(1, kerr.NotLeaderForPartition.Code)
	end := f.Outage(kerr.NotLeaderForPartition.Code)
	given := unique(t, "given-up")
	a := p.post(t, "topic="+topic+"&key=k&acks=-1", given)
	end()
	if a.code != 504 || inKafka(t, c)[string(given)] != 1 {
		t.Fatalf("the fault did not append a record answered 504: %d %s; the test proves nothing", a.code, a.body)
	}
	nextRecordsWritten(t, c, p, "the given-up one")
}

// TestAcksAllNextRecordAfterLostAnswerThenRefusalWritten: a broker appends
// an acks=-1 record's batch and its answer is lost (the connection drops);
// kgo sends the batch again and the broker refuses the retry outright
// (INVALID_RECORD: a check made before the sequence numbers, e.g. on a topic
// made compacted meanwhile). kgo fails the batch and numbers the next one as
// it; a refusal of a batch sent once bumps nothing (nothing was appended),
// but this one was sent twice: the next record must be written when it is
// answered 200.
func TestAcksAllNextRecordAfterLostAnswerThenRefusalWritten(t *testing.T) {
	c, p, f := acksAllAfterFirst(t)
	f.AppendThen(1, 0)
	f.ErrorProduce(1, kerr.InvalidRecord.Code)
	refused := unique(t, "refused-retry")
	a := p.post(t, "topic="+topic+"&key=k&acks=-1", refused)
	if a.code != 504 || inKafka(t, c)[string(refused)] != 1 || f.Injected() != 2 {
		t.Fatalf("appended, answer lost, retry refused: %d %s, in Kafka %d times, %d faults; the test proves nothing",
			a.code, a.body, inKafka(t, c)[string(refused)], f.Injected())
	}
	nextRecordsWritten(t, c, p, "the refused retry")
}

// acksAllAfterFirst is a kproxy (produce_timeout_ms 1500) on a one-broker
// cluster with a one-partition topic, a first acks=-1 record of key k
// written, and the cluster's faults.
func acksAllAfterFirst(t *testing.T) (*kfake.Cluster, *proxy, *kafkatest.Faults) {
	t.Helper()
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 1500 })
	if a := p.post(t, "topic="+topic+"&key=k&acks=-1", unique(t, "first")); a.code != 200 {
		t.Fatalf("first record: %d %s", a.code, a.body)
	}
	return c, p, kafkatest.NewFaults(t, c)
}

// nextRecordsWritten posts three acks=-1 records of key k after what
// (a record given up): each must be answered 200 and be in Kafka once,
// and the client's new producer epoch counted once.
func nextRecordsWritten(t *testing.T, c *kfake.Cluster, p *proxy, what string) {
	t.Helper()
	for i := range 3 {
		next := unique(t, "next-"+strconv.Itoa(i))
		a := p.post(t, "topic="+topic+"&key=k&acks=-1", next)
		if a.code != 200 {
			t.Fatalf("record %d after %s: %d %s", i, what, a.code, a.body)
		}
		if n := inKafka(t, c)[string(next)]; n != 1 {
			t.Errorf("record %d after %s answered %s, in Kafka %d times", i, what, strings.TrimSpace(a.body), n)
		}
	}
	// The new epoch that keeps them from the broker's deduplication is
	// told: batches retried across it may be written twice.
	if m := p.metrics(t); !strings.Contains(m, "kproxy_producer_epoch_changes_total 1\n") {
		t.Errorf("after %s: kproxy_producer_epoch_changes_total is not 1", what)
	}
}

// TestIdempotentPurgeThenRecordWritten: kproxy purges a topic from its
// acks=-1 client when the brokers no longer know the topic by the id the
// client holds (topicPurges.startStaleID). The purged partitions start
// again at sequence 0 under the same producer epoch, and a broker that still
// remembers that epoch's first batches of the partition took a new batch of
// as many records for a retry of one: answered with its offset, not written.
func TestIdempotentPurgeThenRecordWritten(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	opts, err := kafkaconf.Default().Opts("purge-test", c.ListenAddrs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(append(opts, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var sent []string
	for i := range 3 {
		v := "before-purge-" + strconv.Itoa(i)
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		sent = append(sent, v)
		cl.PurgeTopicsFromProducing(topic)
	}
	in := inKafka(t, c)
	for _, v := range sent {
		if in[v] != 1 {
			t.Errorf("%q acknowledged, in Kafka %d times", v, in[v])
		}
	}
}
