package kproxy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCExtFieldsNotForgeable: with ext_headers, a record header named
// after an ext field (ip, rid, …) is kproxy's to set, and /batch refuses a
// record that sets it (TestBatchExtFields). A gRPC request is checked as a
// /batch is: a record forging ip must be refused too, nothing written,
// rather than reach the topic where backends take its ip for the client's
// address.
func TestGRPCExtFieldsNotForgeable(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ExtHeaders = []string{"ip", "rid"} })
	for _, stream := range []bool{false, true} {
		req := &kproxypb.ProduceRequest{Topic: topic, Acks: acksOf(1), Records: []*kproxypb.Record{
			grec("", "", "0"), grec("", "", "1", "ip", "6.6.6.6"),
		}}
		var code codes.Code
		var status, index int32
		var msg string
		if stream {
			s, err := g.kp.ProduceStream(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send(req); err != nil {
				t.Fatal(err)
			}
			resp, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			s.CloseSend()
			status, index, msg = resp.Status, resp.BadIndex, resp.Error
			code = codes.OK
			if status == 400 {
				code = codes.InvalidArgument
			}
		} else {
			resp, err := g.produce(t, nil, req)
			if err == nil {
				t.Errorf("Produce with a record forging ip: OK, status %d, want InvalidArgument 400 at index 1", resp.Status)
				continue
			}
			r := refusalOf(err)
			code, msg = r.code, r.msg
			if r.detail != nil {
				status, index = r.detail.Status, r.detail.BadIndex
			}
		}
		if code != codes.InvalidArgument || status != 400 || index != 1 || !strings.Contains(msg, "set by kproxy") {
			t.Errorf("stream %v: a record forging ip: %v status %d index %d %q, want InvalidArgument 400 at index 1, set by kproxy",
				stream, code, status, index, msg)
		}
	}
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records in %s, want none: every request was refused", n, topic)
	}
}

// TestGRPCStreamClientSwitchKeepsOrder: a stream's request at another acks
// level goes to another Kafka client, so it waits for the earlier
// requests. An earlier record answered 504 ("may have been written") is
// still in its client, and may be written later: a key's next record, by
// the other client, must not be written before it (a swap; DESIGN: a
// record that fails leaves a gap, not a swap). Here the broker holds the
// first record's produce request past produce_timeout_ms and writes it
// afterwards.
func TestGRPCStreamClientSwitchKeepsOrder(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 1000 })
	kafkatest.NewFaults(t, c).Sleep(int16(kmsg.Produce), 1, 4*time.Second) // well past produce_timeout_ms on a loaded machine too
	// The second is sent once the first is answered: its own deadline
	// runs from then.
	s := g.stream(t, nil)
	resps, _ := switchClients(t, s)
	s.CloseSend()
	if resps[0].Status != 504 {
		t.Fatalf("first (held past produce_timeout_ms): status %d %q, want 504", resps[0].Status, resps[0].Error)
	}
	want := "[first]"
	if resps[1].Status == 200 {
		want = "[first second]"
	}
	t.Logf("second: status %d %q", resps[1].Status, resps[1].Error)
	// The held record is written once the broker lets its request go.
	var values []string
	waitFor(t, "the held record written", func() bool {
		values = values[:0]
		for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
			values = append(values, string(r.Value))
		}
		return slices.Contains(values, "first")
	})
	if fmt.Sprint(values) != want {
		t.Errorf("key k in Kafka: %v, want %s (the second answered %d)", values, want, resps[1].Status)
	}
}

// TestGRPCStreamClientSwitchAfterFlipSpools: with the spool, a record
// Kafka has not answered within spool_after_ms is taken into the spool
// (202) and its topic spools; README (Spool, per-key order): neither those
// records nor the topic's later ones wait for kgo to give up on the
// request that carries them, and the spool keeps the key's order. A
// stream's next request at another acks level (another Kafka client) must
// then be spooled behind it within spool_after_ms, not wait for the frozen
// produce request to end.
func TestGRPCStreamClientSwitchAfterFlipSpools(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := spoolGRPC(t, c, nil) // spool_after_ms 200, produce_timeout_ms 3000
	kafkatest.NewFaults(t, c).Sleep(int16(kmsg.Produce), 1, 6*time.Second)
	s := g.stream(t, nil)
	resps, took := switchClients(t, s)
	s.CloseSend()
	if resps[0].Status != 202 {
		t.Fatalf("first (its produce request frozen past spool_after_ms): status %d %q, want 202", resps[0].Status, resps[0].Error)
	}
	// 202 behind the first in the spool, or 200 once the spool drained
	// the first's copy and the topic went direct again.
	written := resps[1].Status == 200 || resps[1].Status == 202
	// Held behind the frozen request, it would wait for its end (6 s);
	// 4 s leaves room for a loaded machine.
	if !written || took[1] > 4*time.Second {
		t.Errorf("second (its topic spooling): status %d %q after %v, want 202 (or 200) within spool_after_ms and a margin",
			resps[1].Status, resps[1].Error, took[1].Round(time.Millisecond))
	}
	// Every record answered 202 reaches Kafka, each key's first copies in
	// order.
	var values []string
	waitFor(t, "the spooled records drained", func() bool {
		values = values[:0]
		for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
			values = append(values, string(r.Value))
		}
		return slices.Contains(values, "first") && (!written || slices.Contains(values, "second"))
	})
	if i, j := slices.Index(values, "first"), slices.Index(values, "second"); j >= 0 && j < i {
		t.Errorf("key k in Kafka: %v, second before first", values)
	}
}

// TestGRPCStreamClientSwitchWaitEndsAtDeadline: a stream's request at
// another acks level waits while Kafka's client still holds an earlier
// request's record (answered 504, its produce request out and unanswered).
// The wait must not outlast the request's own deadline
// (produce_timeout_ms): once that passed, the request cannot be written
// in time anyway and is answered 503 (not written) then, not when kgo
// finally gives up on the frozen request, seconds later.
func TestGRPCStreamClientSwitchWaitEndsAtDeadline(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 1000 })
	// Frozen for 8 s, well past the second's deadline and its margin (3 s):
	// a wait for the frozen request would answer it then at the earliest.
	// The shutdown at cleanup waits for that answer.
	kafkatest.NewFaults(t, c).Sleep(int16(kmsg.Produce), 1, 8*time.Second)
	s := g.stream(t, nil)
	resps, took := switchClients(t, s)
	s.CloseSend()
	if resps[0].Status != 504 {
		t.Fatalf("first (its produce request frozen): status %d %q, want 504", resps[0].Status, resps[0].Error)
	}
	if resps[1].Status != 503 || took[1] > 3*time.Second {
		t.Errorf("second (waiting for the frozen request): status %d %q after %v, want 503 by its deadline (1 s) and a margin",
			resps[1].Status, resps[1].Error, took[1].Round(time.Millisecond))
	}
}

// TestGRPCStreamClientSwitchWaitAnswersBeforeStreamDeadline: README
// (Deadlines): a stream's deadline applies to each of its requests, which
// are given up early enough for kproxy's answer to arrive in time. A
// request at another acks level, waiting while Kafka's client holds an
// earlier request's record, must be answered (503, not written) before
// the stream's deadline too, not left without an answer when the stream
// ends.
func TestGRPCStreamClientSwitchWaitAnswersBeforeStreamDeadline(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	// produce_timeout_ms bounds the first request (answered 504 after
	// about 2.25 s), so that the second arrives with some 1.7 s of the
	// stream left: its wait ends on the stream's deadline with the full
	// margin. A stream deadline binding the first as well left the second
	// 200 ms, and its answer some 20 ms to arrive: too little on a loaded
	// machine.
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 2000 })
	kafkatest.NewFaults(t, c).Sleep(int16(kmsg.Produce), 1, 6*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Second)
	defer cancel()
	s := g.stream(t, ctx) // every answer must come before the stream's deadline
	resps, _ := switchClients(t, s)
	for i, resp := range resps {
		if want := []int32{504, 503}[i]; resp.Status != want {
			t.Errorf("request %d: status %d %q, want %d", i, resp.Status, resp.Error, want)
		}
	}
}

// switchClients sends on s key k's "first" at acks -1 and, once it is
// answered, its "second" at acks 1 (the other Kafka client), and returns
// both answers and how long each took; an answer missing fails the test.
func switchClients(t *testing.T, s grpc.BidiStreamingClient[kproxypb.ProduceRequest, kproxypb.ProduceResponse]) ([]*kproxypb.ProduceResponse, []time.Duration) {
	t.Helper()
	return sendEach(t, s, []*kproxypb.ProduceRequest{
		{Id: 0, Topic: topic, Acks: acksOf(-1), Records: []*kproxypb.Record{grec("", "k", "first")}},
		{Id: 1, Topic: topic, Acks: acksOf(1), Records: []*kproxypb.Record{grec("", "k", "second")}},
	})
}

// sendEach sends reqs on s one after the other, each once the one before
// was answered, and returns the answers and how long each took.
func sendEach(t *testing.T, s grpc.BidiStreamingClient[kproxypb.ProduceRequest, kproxypb.ProduceResponse], reqs []*kproxypb.ProduceRequest) ([]*kproxypb.ProduceResponse, []time.Duration) {
	t.Helper()
	var resps []*kproxypb.ProduceResponse
	var took []time.Duration
	for _, req := range reqs {
		start := time.Now()
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("request %d: no answer: %v", req.Id, err)
		}
		resps, took = append(resps, resp), append(took, time.Since(start))
	}
	return resps, took
}

// TestGRPCKafkaHeaderMetadataNotDropped: x-kafka-header-<name> metadata
// asks for a record header, as HTTP's X-Kafka-Header-<name> does, which
// /batch refuses (TestBatchKafkaHeaderFieldsNotDropped): a gRPC record
// carries its own headers. A call with such metadata has its requests
// refused (InvalidArgument, 400 in a stream), nothing written, rather than
// written without the header.
func TestGRPCKafkaHeaderMetadataNotDropped(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, nil)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-kafka-header-trace-id", "abc")
	req := &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", "v")}}
	_, err := g.produce(t, ctx, req)
	if r := refusalOf(err); r.code != codes.InvalidArgument || !strings.Contains(r.msg, "x-kafka-header-") {
		t.Errorf("Produce with x-kafka-header-trace-id metadata: %v, want InvalidArgument naming x-kafka-header-", r)
	}
	st := g.stream(t, ctx)
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	if resp, err := st.Recv(); err != nil || resp.Status != 400 || !strings.Contains(resp.Error, "x-kafka-header-") {
		t.Errorf("stream with x-kafka-header-trace-id metadata: %v %v, want status 400 naming x-kafka-header-", resp, err)
	}
	st.CloseSend()
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records written without the header asked for", n)
	}
}

// TestGRPCStreamAcks0ThenAcksAllKeepsOrder: an acks=0 request is answered
// at once, its records still in Kafka's client (the acks 0/1 one, one
// produce request in flight per broker: here behind an acks=1 record whose
// request the broker holds). The stream's next request at acks=-1 goes to
// the other client, and waits for every earlier request's records to
// leave Kafka's client (proto: a key's records are written in the order of
// the stream). Before, it waited for those of the acks=1 request only: the
// acks=-1 record was written before the acks=0 one.
func TestGRPCStreamAcks0ThenAcksAllKeepsOrder(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, nil)
	var held atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		// The acks 0/1 client's first two requests (x's, then a's): the
		// acks=-1 client's (b's) goes through at once.
		if req.(*kmsg.ProduceRequest).Acks == 1 && held.Add(1) <= 2 {
			c.SleepControl(func() { time.Sleep(time.Second) })
		}
		return nil, nil, false
	})
	t.Cleanup(c.DropControl)
	s := g.stream(t, nil)
	reqs := []*kproxypb.ProduceRequest{
		{Id: 0, Topic: topic, Acks: acksOf(1), Records: []*kproxypb.Record{grec("", "k", "x")}},
		{Id: 1, Topic: topic, Acks: acksOf(0), Records: []*kproxypb.Record{grec("", "k", "a")}},
		{Id: 2, Topic: topic, Acks: acksOf(-1), Records: []*kproxypb.Record{grec("", "k", "b")}},
	}
	for i, req := range reqs {
		if err := s.Send(req); err != nil {
			t.Fatal(err)
		}
		if i == 0 { // a comes to Kafka's client once x's request is out, not in it
			waitFor(t, "x's produce request at the broker", func() bool { return held.Load() >= 1 })
		}
	}
	for range reqs {
		resp, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 200 {
			t.Fatalf("request %d: status %d %q, want 200", resp.Id, resp.Status, resp.Error)
		}
	}
	s.CloseSend()
	var values []string
	waitFor(t, "the three records written", func() bool {
		values = values[:0]
		for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
			values = append(values, string(r.Value))
		}
		return len(values) == 3
	})
	if fmt.Sprint(values) != "[x a b]" {
		t.Errorf("key k in Kafka: %v, want [x a b] (the stream's order)", values)
	}
}
