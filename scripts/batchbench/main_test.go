package main

import (
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
)

// TestBodiesAndRecordsAgree: a value is exactly -size bytes, and a batch
// body carries the same keys and values the kgo mode writes.
func TestBodiesAndRecordsAgree(t *testing.T) {
	for _, size := range []int{37, 60, 200, 1000, 70000} {
		v, err := valueOf(size)
		if err != nil || len(v) != size {
			t.Fatalf("valueOf(%d): %d bytes, %v", size, len(v), err)
		}
	}
	v, _ := valueOf(200)
	kl := keyList(10_000)
	from := first(3, 5, 100, 10_000)
	var recs []struct {
		Key   string             `msgpack:"key"`
		Value msgpack.RawMessage `msgpack:"value"`
	}
	if err := msgpack.Unmarshal(batchBody(nil, kl, from, 100, v), &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 100 {
		t.Fatalf("%d records", len(recs))
	}
	for i, r := range recs {
		if r.Key != string(kl[(from+i)%len(kl)]) || string(r.Value) != string(v) {
			t.Fatalf("record %d: key %q value % x", i, r.Key, r.Value[:8])
		}
	}
}

// TestGRPCRequestAndCount: a gRPC request carries the keys and values of
// the http body, and the sender counts the results that say 200.
func TestGRPCRequestAndCount(t *testing.T) {
	v, _ := valueOf(200)
	g := &grpcSender{topic: "t", records: 100, keys: 10_000, value: v, kl: keyList(10_000)}
	from := first(3, 5, 100, 10_000)
	req := g.request(from)
	if len(req.Records) != 100 || req.Topic != "t" {
		t.Fatalf("%d records, topic %q", len(req.Records), req.Topic)
	}
	for i, r := range req.Records {
		if string(r.Key) != string(g.kl[(from+i)%10_000]) || string(r.Value) != string(v) {
			t.Fatalf("record %d: key %q", i, r.Key)
		}
	}
	resp := &kproxypb.ProduceResponse{Status: 207, Error: "1 of 3 records not written", Results: []*kproxypb.RecordResult{
		{Status: 200, Partition: 1, Offset: 5}, {Status: 503, Partition: -1, Offset: -1, Error: "no"}, {Status: 200}}}
	b, _ := proto.Marshal(resp)
	var c counted
	if err := (countingCodec{encoding.GetCodecV2("proto")}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &c); err != nil {
		t.Fatal(err)
	}
	if c.status != 207 || c.written != 2 || c.reason != resp.Error {
		t.Errorf("counted %+v", c)
	}
}
