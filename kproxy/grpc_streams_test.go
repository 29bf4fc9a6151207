package kproxy_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCMaxConcurrentStreams: one connection has at most
// grpc_max_concurrent_streams calls open at once. With two streams open
// (the bound), grpc-go's client holds a third call — stream or unary —
// until its deadline, and opens it once one of the two ended.
func TestGRPCMaxConcurrentStreams(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.GRPCMaxConcurrentStreams = 2 })
	req := func(id uint64) *kproxypb.ProduceRequest {
		return &kproxypb.ProduceRequest{Id: id, Topic: topic, Records: []*kproxypb.Record{grec("", "k", "v")}}
	}
	roundTrip := func(s interface {
		Send(*kproxypb.ProduceRequest) error
		Recv() (*kproxypb.ProduceResponse, error)
	}, id uint64) error {
		if err := s.Send(req(id)); err != nil {
			return err
		}
		resp, err := s.Recv()
		if err == nil && resp.Status != 200 {
			t.Errorf("stream request %d: status %d %q", id, resp.Status, resp.Error)
		}
		return err
	}
	first, second := g.stream(t, nil), g.stream(t, nil)
	for i, s := range []interface {
		Send(*kproxypb.ProduceRequest) error
		Recv() (*kproxypb.ProduceResponse, error)
	}{first, second} {
		if err := roundTrip(s, uint64(i)); err != nil { // open at the server
			t.Fatalf("stream %d: %v", i, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	third, err := g.kp.ProduceStream(ctx)
	if err == nil {
		if err := roundTrip(third, 2); err == nil {
			t.Fatal("a third stream was served beside two open ones: grpc_max_concurrent_streams 2 not applied")
		}
		t.Fatalf("a third stream opened beside two open ones (grpc_max_concurrent_streams 2), then failed: %v", err)
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("third stream: %v, want DeadlineExceeded (held by the client until a stream ends)", err)
	}
	if _, err := g.kp.Produce(ctx, req(3)); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("unary call beside two open streams: %v, want DeadlineExceeded", err)
	}

	if err := first.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Recv(); err != io.EOF {
		t.Fatalf("first stream after CloseSend: %v, want its end (EOF)", err)
	}
	third = g.stream(t, nil)
	if err := roundTrip(third, 4); err != nil {
		t.Errorf("a stream once one of two ended: %v", err)
	}
}

func TestGRPCMaxConcurrentStreamsConfig(t *testing.T) {
	if got := kproxy.DefaultConfig().GRPCMaxConcurrentStreams; got != 100 {
		t.Errorf("default grpc_max_concurrent_streams %d, want 100", got)
	}
	for _, tc := range []struct {
		v    int
		want string
	}{
		{0, "kproxy.yaml: grpc_max_concurrent_streams: must be >= 1, got 0"},
		{-3, "kproxy.yaml: grpc_max_concurrent_streams: must be >= 1, got -3"},
		{10_001, "kproxy.yaml: grpc_max_concurrent_streams: must be <= 10000, got 10001"},
	} {
		cfg := kproxy.DefaultConfig()
		cfg.BrokerHosts = []string{"127.0.0.1:9092"}
		cfg.GRPCMaxConcurrentStreams = tc.v
		if err := cfg.Validate("kproxy.yaml"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("grpc_max_concurrent_streams %d: %v, want %q", tc.v, err, tc.want)
		}
	}
	cfg := kproxy.DefaultConfig()
	cfg.BrokerHosts = []string{"127.0.0.1:9092"}
	cfg.GRPCMaxConcurrentStreams = 10_000
	if err := cfg.Validate("kproxy.yaml"); err != nil {
		t.Errorf("grpc_max_concurrent_streams 10000: %v", err)
	}
}
