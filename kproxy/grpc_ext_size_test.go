package kproxy_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCExtFieldsBoundedByMaxHeaderBytes: over HTTP a request's ext
// fields come from its headers, which max_header_bytes bounds (431
// above), so a request's records carry at most that much of them each.
// gRPC metadata may be far larger (grpc-go takes 16 MiB), and every record
// of a call gets a copy of the call's ext fields: a call whose ua, rid and
// ck are larger than max_header_bytes is refused 413 (ResourceExhausted),
// nothing written, rather than writing them into each of up to
// max_batch_records records (10,000 records of a 900 kB cookie: 9 GB in
// Kafka from one call of 1 MB).
func TestGRPCExtFieldsBoundedByMaxHeaderBytes(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startExtGRPC(t, c, []string{"ua", "rid", "ck"}, nil) // max_header_bytes 4096 (default)
	var recs []*kproxypb.Record
	for range 100 {
		recs = append(recs, grec("", "", "x"))
	}
	req := &kproxypb.ProduceRequest{Topic: topic, Records: recs}
	big := "a=" + strings.Repeat("c", 5000)

	_, hdr, err := g.produceMD(t, req, "cookie", big, "x-request-id", "big-1")
	if r := refusalOf(err); r.code != codes.ResourceExhausted || r.detail == nil || r.detail.Status != 413 ||
		!strings.Contains(r.msg, "max_header_bytes") {
		t.Errorf("Produce with a cookie of 5000 bytes: %v, want ResourceExhausted 413 naming max_header_bytes", r)
	}
	if v := hdr.Get("x-request-id"); len(v) != 1 || v[0] != "big-1" {
		t.Errorf("refused call: x-request-id %q, want big-1", v)
	}

	s := g.stream(t, metadata.AppendToOutgoingContext(context.Background(), "cookie", big))
	sent := sendAll(s, []*kproxypb.ProduceRequest{req})
	resps, err := recvAll(s)
	<-sent
	if err != nil || len(resps) != 1 || resps[0].Status != 413 || !strings.Contains(resps[0].Error, "max_header_bytes") {
		var st []int32
		for _, r := range resps {
			st = append(st, r.Status)
		}
		t.Errorf("ProduceStream with a cookie of 5000 bytes: answers %v (%v), want one 413 naming max_header_bytes", st, err)
	}
	if n := kafkatest.Records(t, c, kafkaconf.Default(), topic); n != 0 {
		t.Errorf("%d records written, want none", n)
	}

	// What HTTP could carry passes.
	ok := &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "x")}}
	resp, _, err := g.produceMD(t, ok, "cookie", "a="+strings.Repeat("c", 3000))
	if err != nil {
		t.Fatalf("Produce with a cookie of 3002 bytes: %v", refusalOf(err))
	}
	if got := recordHeaders(t, c, resp)[0]; len(got) != 3 || len(got[2]) != len("ck=")+3002 {
		t.Errorf("cookie of 3002 bytes: headers %d, want ua, rid and the whole ck", len(got))
	}
}
