package kproxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCProduceReadAsShutdownBeginsIsUnavailable: a Produce call's
// message is read while kproxy is not shutting down; the shutdown begins
// before the handler disarms the cut that ends calls still waiting for
// their message. The call's context is then cut though its client is still
// there and its message was taken: it must not be answered Canceled (a
// client's own cancellation, which tells it nothing of its records), nor
// its records handed to Kafka and answered 504 "the call was cancelled".
// It is answered Unavailable (503, not written), and nothing is written.
func TestGRPCProduceReadAsShutdownBeginsIsUnavailable(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	g := startGRPC(t, c, nil)
	decoded := make(chan struct{})
	var once bool
	kproxy.SetAfterDecode(t, func(ctx context.Context) {
		if once {
			return
		}
		once = true
		close(decoded)
		bound := time.After(10 * time.Second)
		select {
		case <-kproxy.Draining(g.srv): // the shutdown began
		case <-bound:
			return
		}
		select {
		case <-ctx.Done(): // and cut the call
		case <-bound:
		}
	})
	type result struct {
		resp *kproxypb.ProduceResponse
		err  error
	}
	answered := make(chan result, 1)
	go func() {
		resp, err := g.produce(t, nil, &kproxypb.ProduceRequest{Topic: topic, Id: 7,
			Records: []*kproxypb.Record{grec("", "k", "one"), grec("", "", "two")}})
		answered <- result{resp, err}
	}()
	select {
	case <-decoded:
	case <-time.After(10 * time.Second):
		t.Fatal("the call's message was never read")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- g.stop() }()
	var r result
	select {
	case r = <-answered:
	case <-time.After(15 * time.Second):
		t.Fatal("the call was not answered")
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run: %v", err)
	}
	if r.err == nil {
		t.Fatalf("answered %v at shutdown, want Unavailable (not written)", r.resp)
	}
	ref := refusalOf(r.err)
	if ref.code != codes.Unavailable || ref.detail == nil || ref.detail.Status != 503 ||
		!strings.Contains(ref.msg, "not written") {
		t.Errorf("answered %v, want Unavailable, status 503, a reason saying nothing was written", ref)
	}
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records in kafka, want none: the call was answered as not written", n)
	}
}
