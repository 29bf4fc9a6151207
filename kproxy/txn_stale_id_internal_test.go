package kproxy

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestTxnStaleTopicIDRefusalKeepsTheNextCommit: an atomic batch's record
// refused with UNKNOWN_TOPIC_ID (the topic re-created, or a broker whose
// metadata lags) is handled while its transactional client may already
// run the next batch: the batch's abort gives the client back at once,
// and what the refusal starts runs in the background. Purging the topic
// from that client then (kgo's PurgeTopicsFromProducing) drops its
// partitions from the client's books while the next batch's records of
// the topic are acknowledged in its transaction: the commit finds no
// partition added, sends an abort (KIP-890) or nothing, and returns nil.
// The batch was answered 200 and its records are not in Kafka. Here the
// refusal is handled right between the next batch's acknowledgement and
// its commit; a commit that returns nil must leave its record readable.
func TestTxnStaleTopicIDRefusalKeepsTheNextCommit(t *testing.T) {
	const top = "txn-stale-id"
	s, c, tp := txnBegun(t, top)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec := &kgo.Record{Topic: top, Value: []byte("answered committed")}
	if err := tp.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s.refusedTopic(tp.cl, top, kerr.UnknownTopicID)
	s.purges.wg.Wait() // what the refusal started in the background, done
	err := s.txns.commit(tp, []batchItem{{itemUse: itemUse{rec: *rec}}}, time.Now().Add(5*time.Second))
	s.txns.put(tp)
	if err != nil {
		t.Fatalf("commit of a transaction whose records were all acknowledged: %v", err)
	}
	rc := kafkatest.Client(t, c, kafkaconf.Default(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{top: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	seen, cancelSeen := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelSeen()
	for seen.Err() == nil {
		found := false
		rc.PollFetches(seen).EachRecord(func(r *kgo.Record) { found = found || string(r.Value) == "answered committed" })
		if found {
			return
		}
	}
	t.Fatal("the transaction's commit returned nil (answered 200) and its record is not readable by a read_committed consumer 5 s later: " +
		"the refusal purged the topic from the client in the middle of the transaction")
}

// TestRetiredTxnClientRefusalPurgesNothing: an UNKNOWN_TOPIC_ID answer that
// reaches a transactional client after it was retired (closed, its id
// fenced) starts nothing: no purge of the closed client, whose warning
// would say kproxy purges a topic it does not.
func TestRetiredTxnClientRefusalPurgesNothing(t *testing.T) {
	const top = "txn-retired"
	s, _, tp := txnBegun(t, top)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := tp.cl
	s.txns.retire(ctx, tp, errStaleTopicID)
	s.txns.put(tp)
	s.refusedTopic(old, top, kerr.UnknownTopicID)
	s.purges.wg.Wait()
	s.purges.mu.Lock()
	n := len(s.purges.last)
	s.purges.mu.Unlock()
	if n != 0 {
		t.Errorf("%d purges started for a refusal reaching a retired transactional client, want none", n)
	}
}

// txnBegun starts a broker holding topic (one partition) and a Server with
// one transactional client (no listener: it is never run), closed when the
// test ends, and begins a transaction on that client.
func txnBegun(t *testing.T, topic string) (*Server, *kfake.Cluster, *txnProducer) {
	t.Helper()
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	cfg := DefaultConfig()
	cfg.Port = 0
	cfg.ListenHost = "127.0.0.1"
	cfg.AdminAddr = ""
	cfg.BrokerHosts = c.ListenAddrs()
	cfg.TransactionalProducers = 1
	cfg.ProduceTimeoutMs = 5000
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.closeKafka(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tp := s.txns.get(ctx, ctx)
	if tp == nil {
		t.Fatal("no free transactional client")
	}
	if err := s.txns.begin(tp, ctx); err != nil {
		t.Fatal(err)
	}
	return s, c, tp
}
