package kproxy_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestInFlightHelpNamesGRPC: kproxy_requests_in_flight said "/commit
// requests and /batch records being processed", but the records of gRPC
// ProduceRequests take their place in req_pool_size too and are in it:
// an operator reading the gauge during a gRPC load would look for HTTP
// requests that are not there. Its HELP names what it counts.
func TestInFlightHelpNamesGRPC(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, nil)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	var held atomic.Int32
	holdProduce(c, release, &held)
	done := make(chan error, 1)
	go func() {
		_, err := g.produce(t, context.Background(), &kproxypb.ProduceRequest{Acks: acksOf(1),
			Records: []*kproxypb.Record{grec(topic, "k", "a"), grec(topic, "k", "b"), grec(topic, "k", "c")}})
		done <- err
	}()
	waitFor(t, "the gRPC records held at the broker", func() bool { return held.Load() > 0 })
	gauge := g.metric(t, "kproxy_requests_in_flight")
	free()
	if err := <-done; err != nil {
		t.Fatalf("Produce: %v", err)
	}
	if gauge != "3" {
		t.Fatalf("kproxy_requests_in_flight %s while 3 gRPC records wait for Kafka, want 3", gauge)
	}
	help := metricHelp(g.metrics(t), "kproxy_requests_in_flight")
	if !strings.Contains(help, "gRPC") {
		t.Errorf("HELP of kproxy_requests_in_flight %q does not say that it counts gRPC records, which it does", help)
	}
}
