package kproxy_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCExtFieldsBoundedByMaxHeaderBytes: over HTTP a request's ext
// fields come from its headers, which max_header_bytes bounds (431
// above), so a request's records carry at most that much of them each.
// Every record of a gRPC call gets a copy of the call's ext fields; the
// call's metadata is bounded by max_header_bytes as well (HTTP/2's
// SETTINGS_MAX_HEADER_LIST_SIZE): a call with a larger cookie is refused
// before it is read, its grpc-go client naming the limit, nothing
// written, rather than writing it into each of up to max_batch_records
// records (10,000 records of a 900 kB cookie: 9 GB in Kafka from one call
// of 1 MB). What HTTP could carry passes.
func TestGRPCExtFieldsBoundedByMaxHeaderBytes(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startExtGRPC(t, c, []string{"ua", "rid", "ck"}, nil) // max_header_bytes 4096 (default)
	var recs []*kproxypb.Record
	for range 100 {
		recs = append(recs, grec("", "", "x"))
	}
	req := &kproxypb.ProduceRequest{Topic: topic, Records: recs}
	big := "a=" + strings.Repeat("c", 5000)

	_, _, err := g.produceMD(t, req, "cookie", big, "x-request-id", "big-1")
	if st := status.Convert(err); st.Code() == codes.OK || !strings.Contains(st.Message(), "4096") {
		t.Errorf("Produce with a cookie of 5000 bytes: %v, want refused naming the limit (4096)", refusalOf(err))
	}

	var resps []*kproxypb.ProduceResponse
	s, err := g.kp.ProduceStream(metadata.AppendToOutgoingContext(t.Context(), "cookie", big))
	if err == nil {
		sent := sendAll(s, []*kproxypb.ProduceRequest{req})
		resps, err = recvAll(s)
		<-sent
	}
	if st := status.Convert(err); len(resps) != 0 || st.Code() == codes.OK || !strings.Contains(st.Message(), "4096") {
		t.Errorf("ProduceStream with a cookie of 5000 bytes: %d answers, %v; want refused naming the limit (4096)", len(resps), err)
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
