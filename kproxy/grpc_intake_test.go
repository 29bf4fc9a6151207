package kproxy_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
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
