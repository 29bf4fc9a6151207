package kproxy_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The setup the tests of atomic batches share: a kproxy with one
// transactional producer, Kafka's answers to InitProducerID, and what a
// read_committed consumer sees afterwards.

// txnProxy is a kproxy with one transactional producer and
// produce_timeout_ms timeoutMs (0: the default) on a 3-broker cluster
// (threeBrokers: partition p of topic led by broker p, and more).
func txnProxy(t *testing.T, timeoutMs int, more ...kafkatest.Topic) (*kfake.Cluster, *proxy) {
	t.Helper()
	c := threeBrokers(t, more...)
	return c, startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.TransactionalProducers = 1
		if timeoutMs != 0 {
			cfg.ProduceTimeoutMs = timeoutMs
		}
	})
}

// txnGRPC is a kproxy serving gRPC with one transactional producer,
// grpc_max_concurrent_streams streams and produce_timeout_ms timeoutMs,
// on one broker holding topic (one partition).
func txnGRPC(t *testing.T, streams, timeoutMs int) (*kfake.Cluster, *gproxy) {
	t.Helper()
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	return c, startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.GRPCMaxConcurrentStreams = streams
		cfg.TransactionalProducers = 1
		cfg.ProduceTimeoutMs = timeoutMs
	})
}

// answerInitProducerID answers the transactional clients' InitProducerID
// requests in the brokers' stead until stop is called: with the error code
// code returns for the n-th of them (from 1), or, when it returns 0, lets
// the broker answer. The idempotent producers' requests (no transactional
// id) always go to the broker.
func answerInitProducerID(c *kfake.Cluster, code func(n int32) int16) (stop func()) {
	var stopped atomic.Bool
	var n atomic.Int32
	c.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		init := req.(*kmsg.InitProducerIDRequest)
		if init.TransactionalID == nil || stopped.Load() {
			return nil, nil, false
		}
		ec := code(n.Add(1))
		if ec == 0 {
			return nil, nil, false
		}
		resp := init.ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ErrorCode = ec
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp, nil, true
	})
	return func() { stopped.Store(true) }
}

// watchAppends returns the high watermarks of partitions 0 and 1 of topic
// now, and a channel closed once both have grown past them (or the test
// ended).
func watchAppends(t *testing.T, c *kfake.Cluster) (before [2]int64, appended <-chan struct{}) {
	t.Helper()
	before = [2]int64{c.PartitionInfo(topic, 0).HighWatermark, c.PartitionInfo(topic, 1).HighWatermark}
	done := make(chan struct{})
	quit := make(chan struct{})
	t.Cleanup(func() { close(quit) })
	go func() {
		defer close(done)
		for c.PartitionInfo(topic, 0).HighWatermark == before[0] || c.PartitionInfo(topic, 1).HighWatermark == before[1] {
			select {
			case <-quit:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return before, done
}

// refuseAfterAppends has broker 2 refuse its produce requests with code
// (partition 2 of topic, per threeBrokers) once partitions 0 and 1 hold
// records written after the call (at most 5 s later): an atomic batch is
// then aborted with records in the log. It returns watchAppends' high
// watermarks, and stop.
func refuseAfterAppends(t *testing.T, c *kfake.Cluster, code int16) (before [2]int64, stop func()) {
	t.Helper()
	before, appended := watchAppends(t, c)
	stop = onBroker(c, 2, func(pr *kmsg.ProduceRequest) (kmsg.Response, error, bool) {
		c.SleepControl(func() {
			select {
			case <-appended:
			case <-time.After(5 * time.Second):
			}
		})
		return kafkatest.ProduceError(pr, code), nil, true
	})
	return before, stop
}

// laterVisible writes a record to partition 0 of topic and tells whether a
// read_committed consumer saw it by the time by: false when a transaction
// left open keeps it from them.
func laterVisible(t *testing.T, c *kfake.Cluster, by time.Time) bool {
	t.Helper()
	cl := kafkatest.Client(t, c, kafkaconf.Default(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("later")}).First()
	if err != nil {
		t.Fatal(err)
	}
	rc := kafkatest.Client(t, c, kafkaconf.Default(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(r.Offset)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(100*time.Millisecond))
	seen, cancelSeen := context.WithDeadline(context.Background(), by)
	defer cancelSeen()
	for {
		fs := rc.PollFetches(seen)
		found := false
		fs.EachRecord(func(got *kgo.Record) { found = found || string(got.Value) == "later" })
		if found {
			return true
		}
		if seen.Err() != nil {
			return false
		}
	}
}
