package kproxy_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestStreamRoomWaitAtShutdownSaysShuttingDown: a stream request waiting
// for room in req_pool_size (for the stream's own earlier request, held by
// a slow broker) when the shutdown begins is not written, and its answer
// says why: kproxy is shutting down. It said "overloaded", which sends an
// operator looking at req_pool_size and a client at its load, not at a
// restart (a retry elsewhere is what both answers ask).
func TestStreamRoomWaitAtShutdownSaysShuttingDown(t *testing.T) {
	const per = 10
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.ShutdownTimeoutMs = 20_000
		cfg.ReqPoolSize = per
	})
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)
	s := g.stream(t, nil)
	for _, r := range keyedRequests(2, per, 3, func(int) int32 { return 1 }) {
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the first request's records at the broker", func() bool { return held.Load() > 0 && g.srv.InFlight() == per })
	time.Sleep(500 * time.Millisecond) // the second request read, waiting for room
	stopped := make(chan error, 1)
	go func() { stopped <- g.stop() }()
	awaitShutdown(t, g.srv)
	close(release)
	resps, err := recvAll(s)
	if status.Code(err) != codes.Unavailable || len(resps) != 2 {
		t.Fatalf("stream at shutdown: %d answers, end %v; want 2 and Unavailable", len(resps), err)
	}
	if r := resps[0]; r.Status != 200 {
		t.Errorf("the first request, its records at the broker: %d %q; want 200", r.Status, r.Error)
	}
	if r := resps[1]; r.Status != 503 || !strings.Contains(r.Error, "shutting down") {
		t.Errorf("the request waiting for room at shutdown: %d %q; want 503 saying kproxy is shutting down", r.Status, r.Error)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := endOffsets(t, c, topic); n != per {
		t.Errorf("%d records in Kafka, want the %d answered 200", n, per)
	}
}

// TestStreamSettleWaitEndsAtShutdown: a stream request at another acks
// level waits until Kafka's client no longer holds the stream's earlier
// records (answered 504 at their deadline, still at a slow broker). When
// the shutdown begins meanwhile it is refused at once — not written,
// "shutting down" — as a request waiting for room is; it waited out its
// whole deadline, holding the shutdown that long.
func TestStreamSettleWaitEndsAtShutdown(t *testing.T) {
	const deadline = 3 * time.Second
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.ShutdownTimeoutMs = 20_000
		cfg.ProduceTimeoutMs = int(deadline / time.Millisecond)
	})
	for _, acks := range []string{"1", "-1"} { // both Kafka clients warm
		if a := g.post(t, "acks="+acks+"&topic="+topic+"&key=warm", []byte{0x00}); a.code != 200 {
			t.Fatalf("warm-up /commit at acks=%s: %d %s", acks, a.code, a.body)
		}
	}
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)
	s := g.stream(t, nil)
	reqs := keyedRequests(2, 3, 3, func(q int) int32 { return []int32{-1, 1}[q] })
	if err := s.Send(reqs[0]); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Recv(); err != nil || r.Status != 504 || held.Load() == 0 {
		t.Fatalf("set-up: the acks=-1 request answered %v %v (produce requests held %d), want 504 with its records at the broker", r, err, held.Load())
	}
	if err := s.Send(reqs[1]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the acks=1 request waits for the earlier records
	stopped := make(chan error, 1)
	go func() { stopped <- g.stop() }()
	awaitShutdown(t, g.srv)
	begun := time.Now()
	r, err := s.Recv()
	took := time.Since(begun)
	close(release)
	if err != nil {
		t.Fatalf("the waiting request's answer: %v", err)
	}
	if r.Status != 503 || !strings.Contains(r.Error, "shutting down") || took > deadline/2 {
		t.Errorf("the request waiting for the earlier records at shutdown: %d %q after %v; want 503 shutting down at once (its deadline is %v)",
			r.Status, r.Error, took.Round(time.Millisecond), deadline)
	}
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("stream end at shutdown: %v, want Unavailable", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
