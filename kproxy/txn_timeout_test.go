package kproxy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestAtomicTransactionTimeoutAboveTheBrokersMaxIs500: brokers whose
// transaction.max.timeout.ms is below kproxy's transaction timeout
// (2 × produce_timeout_ms + 5 s: 25 s by default) refuse every
// transactional id with INVALID_TRANSACTION_TIMEOUT. Every atomic batch is
// refused the same way until one of the two settings changes: the answer
// says so and is not one a client retries (it was 503 + Retry-After,
// "not written, retry", for every batch, forever).
func TestAtomicTransactionTimeoutAboveTheBrokersMaxIs500(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}},
		kfake.BrokerConfigs(map[string]string{"transaction.max.timeout.ms": "20000"}))
	edit := func(cfg *kproxy.Config) { cfg.TransactionalProducers = 1 }
	p := startProxy(t, c, edit)
	recs, _ := failureBatch(t, "timeout-")
	for range 2 { // the second batch finds the same answer, not a stuck client
		a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs))
		if a.code != 500 || a.hdr.Get("Retry-After") != "" ||
			!strings.Contains(a.Error, "transaction.max.timeout.ms") || !strings.Contains(a.Error, "produce_timeout_ms") {
			t.Fatalf("atomic batch the brokers refuse the transaction timeout of: %v (Retry-After %q), want 500 naming transaction.max.timeout.ms and produce_timeout_ms",
				a, a.hdr.Get("Retry-After"))
		}
	}
	if n := len(byValue(t, c, topic)); n != 0 {
		t.Errorf("%d records of refused atomic batches visible", n)
	}

	g := startGRPC(t, c, edit)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acks := int32(-1)
	_, err := g.kp.Produce(ctx, &kproxypb.ProduceRequest{Acks: &acks, Atomic: true, Topic: topic,
		Records: []*kproxypb.Record{{Key: []byte("k"), Value: []byte("v")}}})
	if status.Code(err) != codes.Internal || !strings.Contains(status.Convert(err).Message(), "transaction.max.timeout.ms") {
		t.Errorf("gRPC atomic Produce the brokers refuse the transaction timeout of: %v, want Internal naming transaction.max.timeout.ms", err)
	}
	if r := refusalOf(err); r.detail == nil || r.detail.Status != 500 || r.detail.RetryAfter != 0 {
		t.Errorf("gRPC atomic Produce the brokers refuse the transaction timeout of: detail %v, want status 500 without retry_after", r.detail)
	}
}

// TestProduceTimeoutAboveKafkasTransactionMaxWarned: a produce_timeout_ms
// giving a transaction timeout above Kafka's default
// transaction.max.timeout.ms (900000 ms) loads (brokers may allow more),
// and -check and the start warn naming the file, the key and its value;
// with atomic batches off, or at 447500 ms (900000 ms exactly), nothing is
// said.
func TestProduceTimeoutAboveKafkasTransactionMaxWarned(t *testing.T) {
	for _, tc := range []struct {
		produceTimeout, txnProducers int
		warned                       bool
	}{
		{447501, 2, true},
		{447500, 2, false},
		{447501, 0, false},
	} {
		f := filepath.Join(t.TempDir(), "kproxy.yaml")
		doc := fmt.Sprintf("port: 0\nbroker_hosts:\n - 127.0.0.1:9092\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nproduce_timeout_ms: %d\ntransactional_producers: %d\n",
			tc.produceTimeout, tc.txnProducers)
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := kproxy.LoadConfig(f)
		if err != nil {
			t.Fatalf("produce_timeout_ms %d: the file must load: %v", tc.produceTimeout, err)
		}
		var warned []string
		for _, w := range cfg.Warnings() {
			if strings.Contains(w, "transaction.max.timeout.ms") {
				warned = append(warned, w)
			}
		}
		prefix := fmt.Sprintf("%s: produce_timeout_ms: %d ", f, tc.produceTimeout)
		switch {
		case tc.warned && (len(warned) != 1 || !strings.HasPrefix(warned[0], prefix)):
			t.Errorf("produce_timeout_ms %d, transactional_producers %d: warnings %q, want one starting %q",
				tc.produceTimeout, tc.txnProducers, cfg.Warnings(), prefix)
		case !tc.warned && len(warned) > 0:
			t.Errorf("produce_timeout_ms %d, transactional_producers %d: warned %q", tc.produceTimeout, tc.txnProducers, warned)
		}
	}
}

// TestMaxBatchRecordsAboveAGRPCAnswerWarned: with grpc_port set, a
// max_batch_records whose failed batch's answer (a result per record,
// each with its reason) can pass the 4 MiB gRPC clients take by default
// loads, and -check and the start warn naming the file, the key and its
// value: the client fails such a call RESOURCE_EXHAUSTED, which says "not
// written" although records may have been. Without grpc_port, at 13107
// (320 bytes a result), or above req_pool_size (a batch larger than it is
// refused whole, with no results), nothing is said.
func TestMaxBatchRecordsAboveAGRPCAnswerWarned(t *testing.T) {
	for _, tc := range []struct {
		records, pool, grpcPort int
		warned                  bool
	}{
		{13108, 13108, 5070, true},
		{13107, 13107, 5070, false},
		{40000, 40000, 0, false},
		{20000, 10240, 5070, false},
	} {
		f := filepath.Join(t.TempDir(), "kproxy.yaml")
		doc := fmt.Sprintf("port: 0\nbroker_hosts:\n - 127.0.0.1:9092\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nmax_batch_records: %d\nreq_pool_size: %d\ngrpc_port: %d\n",
			tc.records, tc.pool, tc.grpcPort)
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := kproxy.LoadConfig(f)
		if err != nil {
			t.Fatalf("max_batch_records %d: the file must load: %v", tc.records, err)
		}
		var warned []string
		for _, w := range cfg.Warnings() {
			if strings.Contains(w, "RESOURCE_EXHAUSTED") {
				warned = append(warned, w)
			}
		}
		prefix := fmt.Sprintf("%s: max_batch_records: %d ", f, tc.records)
		switch {
		case tc.warned && (len(warned) != 1 || !strings.HasPrefix(warned[0], prefix)):
			t.Errorf("max_batch_records %d, grpc_port %d: warnings %q, want one starting %q", tc.records, tc.grpcPort, cfg.Warnings(), prefix)
		case !tc.warned && len(warned) > 0:
			t.Errorf("max_batch_records %d, grpc_port %d: warned %q", tc.records, tc.grpcPort, warned)
		}
	}
}
