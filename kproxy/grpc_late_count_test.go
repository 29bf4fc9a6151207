package kproxy_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCCancelledCallWrittenLaterCounted: README's
// kproxy_records_total is "records Kafka accepted". A Produce call
// cancelled by its client while a broker holds its records is given up
// (counted 504: no answer from Kafka in time); when Kafka then writes
// them, they are records Kafka accepted, and counted so.
func TestGRPCCancelledCallWrittenLaterCounted(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, nil)
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := g.kp.Produce(ctx, &kproxypb.ProduceRequest{Topic: topic, Acks: acksOf(1),
			Records: []*kproxypb.Record{grec("", "k", "a"), grec("", "k", "b")}})
		done <- err
	}()
	waitFor(t, "the broker to hold the call's records", func() bool { return held.Load() > 0 })
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled call: %v", err)
	}
	waitFor(t, "the cancelled call's handler to end", func() bool {
		return strings.Contains(g.metrics(t), `method="kafkahttpwrapper.v1.KProxy/Produce"} 1`)
	})
	close(release)
	waitFor(t, "the records in Kafka", func() bool { return endOffsets(t, c, topic) == 2 })
	want := `kproxy_records_total{acks="1"} 2`
	waitFor(t, "the records written after their call was given up counted in "+want, func() bool {
		return strings.Contains(g.metrics(t), want)
	})
}
