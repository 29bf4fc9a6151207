package kproxy_test

import (
	"runtime"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestPaddedAcks0StreamRequestsHoldTheirRecordsOnly: a stream's acks=0
// requests of one small record each, padded with 256 KiB of a field
// kproxy skips, while the broker holds every produce request. Each is
// answered 200 at once and its record waits in Kafka's client. That record
// kept its whole message: 200 requests held about 55 MiB (req_pool_size of
// them, 10 MiB each at the default max_request_size_bytes: 100 GiB), where
// /commit copies its record. Now the records are copied out of a message that is
// mostly something else.
func TestPaddedAcks0StreamRequestsHoldTheirRecordsOnly(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.MaxRequestSizeBytes = 1 << 20 })
	t.Cleanup(func() { close(release) }) // before kproxy stops: it waits for the records
	s := g.stream(t, nil)

	pad := protowire.AppendBytes(protowire.AppendTag(nil, 99, protowire.BytesType), make([]byte, 256<<10))
	before := heapInUse()
	const n = 200
	for i := range n {
		req := &kproxypb.ProduceRequest{Acks: acksOf(0), Topic: "t", Id: uint64(i), Records: []*kproxypb.Record{grec("", "k", "v")}}
		req.ProtoReflect().SetUnknown(pad)
		if err := s.Send(req); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		resp, err := s.Recv()
		if err != nil || resp.Status != 200 {
			t.Fatalf("answer %d: %v %v, want 200", i, resp, err)
		}
	}
	if held.Load() == 0 {
		t.Fatal("no produce request reached the broker: the records were not waiting in Kafka's client")
	}
	if grown := heapInUse() - before; grown > 24<<20 {
		t.Errorf("%d acks=0 records of 1 byte waiting, sent in 256 KiB messages: the heap grew %d MiB, want their records only", n, grown>>20)
	}
	// Nor are the messages let go counted in max_body_bytes_in_flight:
	// the records copied out of them are under 16 KiB.
	if v := g.metric(t, "kproxy_body_bytes_in_flight"); v != "0" {
		t.Errorf("kproxy_body_bytes_in_flight = %s with the messages let go, want 0", v)
	}
}

// heapInUse is the heap in use after two collections.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}
