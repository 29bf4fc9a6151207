package kproxy_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc/codes"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCMessagesHeldInMaxBodyBytesInFlight: a gRPC message over 16 KiB
// holds its body in max_body_bytes_in_flight, as an HTTP body does, from
// its read until Kafka's client lets its records go; one that would pass
// it is refused 503 (Unavailable, Retry-After), nothing written, a stream
// going on. Before, gRPC messages were counted nowhere: streams and calls
// on any number of connections held as many bodies as they sent, each up
// to max_request_size_bytes, while Kafka was slow.
func TestGRPCMessagesHeldInMaxBodyBytesInFlight(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.MaxBodyBytesInFlight = 64 << 10 })
	kafkatest.NewFaults(t, c).Sleep(int16(kmsg.Produce), 1, 2*time.Second)
	big := strings.Repeat("v", 40<<10) // a body of 40 KiB and some: two pass 64 KiB
	req := func(id uint64) *kproxypb.ProduceRequest {
		return &kproxypb.ProduceRequest{Id: id, Topic: topic, Acks: acksOf(1), Records: []*kproxypb.Record{grec("", "k", big)}}
	}
	s := g.stream(t, nil)
	if err := s.Send(req(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first message's body held", func() bool { return g.metric(t, "kproxy_body_bytes_in_flight") != "0" })

	_, err := g.produce(t, nil, req(2))
	if r := refusalOf(err); r.code != codes.Unavailable || !strings.Contains(r.msg, "max_body_bytes_in_flight") ||
		r.detail == nil || r.detail.Status != 503 || r.detail.RetryAfter != 1 || r.detail.Id != 2 {
		t.Errorf("Produce while the budget holds another message: %v, want Unavailable 503 naming max_body_bytes_in_flight, retry_after 1, id 2", r)
	}
	s2 := g.stream(t, nil)
	if err := s2.Send(req(3)); err != nil {
		t.Fatal(err)
	}
	if resp, err := s2.Recv(); err != nil || resp.Status != 503 || resp.Id != 3 || !strings.Contains(resp.Error, "max_body_bytes_in_flight") {
		t.Errorf("a stream's request while the budget holds another message: %v %v, want 503 naming max_body_bytes_in_flight, id 3", resp, err)
	}

	if resp, err := s.Recv(); err != nil || resp.Status != 200 {
		t.Fatalf("the first request: %v %v, want 200", resp, err)
	}
	waitFor(t, "every body given back", func() bool { return g.metric(t, "kproxy_body_bytes_in_flight") == "0" })
	if err := s2.Send(req(4)); err != nil {
		t.Fatal(err)
	}
	if resp, err := s2.Recv(); err != nil || resp.Status != 200 {
		t.Errorf("the refused stream's next request, the budget free: %v %v, want 200", resp, err)
	}
	if _, err := g.produce(t, nil, req(5)); err != nil {
		t.Errorf("Produce, the budget free: %v", err)
	}
	s.CloseSend()
	s2.CloseSend()
	if n := endOffsets(t, c, topic); n != 3 {
		t.Errorf("%d records in %s, want 3 (requests 1, 4 and 5; 2 and 3 refused)", n, topic)
	}
}

// TestGRPCStreamWaitingMessagesHoldNoBudget: a stream's messages read ahead
// of its window (8 requests out) hold nothing in max_body_bytes_in_flight
// until the stream takes them: they wait as long as the client leaves its
// answers unread, and held there, a few streams that read no answers kept
// every other client's large bodies refused for as long as they stayed
// open. Nor does a small message count the pooled buffer it is read into.
func TestGRPCStreamWaitingMessagesHoldNoBudget(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, nil)
	// A message of 400 KiB first: its job's buffer goes back to the pool.
	if _, err := g.produce(t, nil, &kproxypb.ProduceRequest{Topic: topic, Acks: acksOf(1),
		Records: []*kproxypb.Record{grec("", "k", strings.Repeat("p", 400<<10))}}); err != nil {
		t.Fatal(err)
	}
	kafkatest.NewFaults(t, c).Sleep(int16(kmsg.Produce), 1, 3*time.Second)
	if _, err := g.produce(t, nil, &kproxypb.ProduceRequest{Topic: topic, Acks: acksOf(0),
		Records: []*kproxypb.Record{grec("", "k", "small")}}); err != nil {
		t.Fatal(err)
	}
	if v := g.metric(t, "kproxy_body_bytes_in_flight"); v != "0" {
		t.Errorf("kproxy_body_bytes_in_flight = %s with one small message in Kafka's client, want 0", v)
	}
	const size = 20 << 10
	s := g.stream(t, nil)
	for i := range 10 {
		req := &kproxypb.ProduceRequest{Id: uint64(i), Topic: topic, Acks: acksOf(1), Records: []*kproxypb.Record{grec("", "k", strings.Repeat("v", size))}}
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the stream's requests out", func() bool { return g.metric(t, "kproxy_body_bytes_in_flight") != "0" })
	time.Sleep(500 * time.Millisecond) // the last two read and waiting
	if v := g.metric(t, "kproxy_body_bytes_in_flight"); parseFloat(t, v) >= 9*size {
		t.Errorf("kproxy_body_bytes_in_flight = %s with 8 messages of %d bytes out and 2 waiting, want those out only", v, size)
	}
	for range 10 {
		if resp, err := s.Recv(); err != nil || resp.Status != 200 {
			t.Fatalf("answer: %v %v, want 200", resp, err)
		}
	}
	s.CloseSend()
	waitFor(t, "every body given back", func() bool { return g.metric(t, "kproxy_body_bytes_in_flight") == "0" })
}

func parseFloat(t *testing.T, v string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
