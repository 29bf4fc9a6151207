package kproxy_test

import (
	"context"
	"testing"
	"time"

	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCShutdownNotHeldByReflectionStream: a reflection stream left
// open by its client (a tool that keeps it for the session) carries no
// records: shutdown ends it, as it ends an idle ProduceStream, and does
// not wait for it until shutdown_timeout_ms.
func TestGRPCShutdownNotHeldByReflectionStream(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ShutdownTimeoutMs = 8000 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc, err := rpb.NewServerReflectionClient(g.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rc.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}})
	if _, err := rc.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := g.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v (shutdown_timeout_ms 8000) with a reflection stream open", d)
	}
	if _, err := rc.Recv(); err == nil {
		t.Errorf("the reflection stream was not ended at shutdown")
	}
}
