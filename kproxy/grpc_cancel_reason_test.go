package kproxy_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestGRPCCancelledCallLoggedAsSuch: a Produce call cancelled by its
// client while a broker holds its records is given up at once, long
// before produce_timeout_ms. The log says so; it does not claim Kafka
// gave no answer within produce_timeout_ms, which would send an operator
// looking at the brokers for what a client did.
func TestGRPCCancelledCallLoggedAsSuch(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	var logs runtest.Log
	p := logProxy(t, c, &logs, func(cfg *kproxy.Config) {
		cfg.GRPCPort = freeTCPPort(t)
		cfg.ProduceTimeoutMs = 20_000
	})
	conn, err := grpc.NewClient(p.srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	release := make(chan struct{})
	defer close(release)
	var held atomic.Int32
	holdProduce(c, release, &held)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := kproxypb.NewKProxyClient(conn).Produce(ctx, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", "a")}})
		done <- err
	}()
	waitFor(t, "the broker to hold the call's records", func() bool { return held.Load() > 0 })
	cancel()
	<-done
	waitFor(t, "the given-up call logged", func() bool { return strings.Contains(logs.String(), "kafka write of a batch failed") })
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "kafka write of a batch failed") &&
			(strings.Contains(l, "produce_timeout_ms") || !strings.Contains(l, "cancelled")) {
			t.Errorf("a call its client cancelled after a few ms, produce_timeout_ms 20000, logged as: %s", l)
		}
	}
}
