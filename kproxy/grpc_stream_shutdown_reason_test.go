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
