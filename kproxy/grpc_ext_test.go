package kproxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The ext fields (ext_headers: ip, ua, rid, ck) over gRPC: a request is a
// /batch batch (README, gRPC), so its records get the call's ext fields
// after their own headers, read here with a consumer, and the call's
// request id comes back in the response header metadata x-request-id.
// TestExtFields is the same over HTTP.

// testUA is the user agent the tests' client is dialled with; grpc-go
// sends it followed by its own.
const testUA = "tester/1.0 (ext)"

var grpcUA = testUA + " grpc-go/" + grpc.Version

// startExtGRPC starts kproxy with ext_headers and trusted_proxies and
// dials it with testUA.
func startExtGRPC(t *testing.T, c *kfake.Cluster, ext, trusted []string) *gproxy {
	t.Helper()
	return startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ExtHeaders, cfg.TrustedProxies = ext, trusted },
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent(testUA))
}

// produceMD calls Produce with metadata md (key, value, …) and returns
// the answer and the response header metadata.
func (g *gproxy) produceMD(t *testing.T, req *kproxypb.ProduceRequest, md ...string) (*kproxypb.ProduceResponse, metadata.MD, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(t.Context(), md...), 30*time.Second)
	defer cancel()
	var hdr metadata.MD
	resp, err := g.kp.Produce(ctx, req, grpc.Header(&hdr))
	return resp, hdr, err
}

// streamMD sends reqs on one ProduceStream with metadata md, and returns
// the answers and the response header metadata.
func (g *gproxy) streamMD(t *testing.T, reqs []*kproxypb.ProduceRequest, md ...string) ([]*kproxypb.ProduceResponse, metadata.MD) {
	t.Helper()
	s := g.stream(t, metadata.AppendToOutgoingContext(t.Context(), md...))
	sent := sendAll(s, reqs)
	resps, err := recvAll(s)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("stream: send: %v", err)
	}
	hdr, err := s.Header()
	if err != nil {
		t.Fatalf("stream: header: %v", err)
	}
	if len(resps) != len(reqs) {
		t.Fatalf("%d answers to %d requests", len(resps), len(reqs))
	}
	return resps, hdr
}

// oneRID is the single x-request-id of hdr, or "" with an error noted.
func oneRID(t *testing.T, hdr metadata.MD) string {
	t.Helper()
	v := hdr.Get("x-request-id")
	if len(v) != 1 {
		t.Errorf("response header metadata x-request-id %q, want one value", v)
		return ""
	}
	return v[0]
}

// recordHeaders reads back the records of resp (every one answered 200)
// and returns their headers, as headersOf gives them.
func recordHeaders(t *testing.T, c *kfake.Cluster, resp *kproxypb.ProduceResponse) [][]string {
	t.Helper()
	if resp.Status != 200 {
		t.Fatalf("answer %v, want 200", resp)
	}
	var out [][]string
	for _, r := range resp.Results {
		out = append(out, headersOf(readRecord(t, c, topic, r.Partition, r.Offset)))
	}
	return out
}

// TestGRPCExtFieldsProduce: every ext field of a Produce call, read back:
// ip the peer, ua the user-agent metadata as received, rid the call's
// x-request-id (echoed in the header metadata) or a fresh UUID, ck the
// cookie metadata joined; after each record's own headers. A call without
// cookie gets no ck.
func TestGRPCExtFieldsProduce(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	g := startExtGRPC(t, c, []string{"ip", "ua", "rid", "ck"}, nil)
	req := &kproxypb.ProduceRequest{Topic: topic, Acks: acksOf(-1), Records: []*kproxypb.Record{
		grec("", "k1", "0", "trace", "t1"), grec("", "", "1"),
	}}

	resp, hdr, err := g.produceMD(t, req, "x-request-id", "req-42", "cookie", "a=1;b=two", "cookie", " theme=dark ",
		"x-forwarded-for", "203.0.113.9") // not believed: no trusted_proxies
	if err != nil {
		t.Fatalf("Produce: %v", refusalOf(err))
	}
	if rid := oneRID(t, hdr); rid != "req-42" {
		t.Errorf("x-request-id %q in the answer, want req-42", rid)
	}
	ext := []string{"ip=127.0.0.1", "ua=" + grpcUA, "rid=req-42", "ck=a=1;b=two; theme=dark"}
	for i, got := range recordHeaders(t, c, resp) {
		want := ext
		if i == 0 {
			want = append([]string{"trace=t1"}, ext...)
		}
		if !sameList(got, want) {
			t.Errorf("record %d: headers %q, want %q", i, got, want)
		}
	}

	// No x-request-id: each call gets a new one, answered, and its
	// records' rid; no cookie: no ck.
	ids := map[string]bool{}
	for range 3 {
		resp, hdr, err := g.produceMD(t, req)
		if err != nil {
			t.Fatalf("Produce: %v", refusalOf(err))
		}
		rid := oneRID(t, hdr)
		if !uuidV4.MatchString(rid) || ids[rid] {
			t.Fatalf("generated x-request-id %q: not a fresh version 4 UUID", rid)
		}
		ids[rid] = true
		for i, got := range recordHeaders(t, c, resp) {
			want := []string{"ip=127.0.0.1", "ua=" + grpcUA, "rid=" + rid}
			if i == 0 {
				want = append([]string{"trace=t1"}, want...)
			}
			if !sameList(got, want) {
				t.Errorf("record %d: headers %q, want %q", i, got, want)
			}
		}
	}
}

// TestGRPCExtFieldsStream: the records of every request of a
// ProduceStream get the stream's ext fields; its rid is the stream's
// x-request-id, or one UUID made when the stream opens, shared by all its
// requests and echoed once in the stream's header metadata.
func TestGRPCExtFieldsStream(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	g := startExtGRPC(t, c, []string{"ip", "ua", "rid", "ck"}, nil)
	reqs := func() []*kproxypb.ProduceRequest {
		return []*kproxypb.ProduceRequest{
			{Id: 1, Topic: topic, Acks: acksOf(1), Records: []*kproxypb.Record{grec("", "k1", "0", "trace", "t1"), grec("", "", "1")}},
			{Id: 2, Topic: topic, Acks: acksOf(-1), Records: []*kproxypb.Record{grec("", "k2", "2")}},
			{Id: 3, Topic: topic, Acks: acksOf(1), Records: []*kproxypb.Record{grec("", "k1", "3")}},
		}
	}

	resps, hdr := g.streamMD(t, reqs(), "x-request-id", "stream-7", "cookie", "sid=abc")
	if rid := oneRID(t, hdr); rid != "stream-7" {
		t.Errorf("x-request-id %q in the stream's header metadata, want stream-7", rid)
	}
	for q, resp := range resps {
		for i, got := range recordHeaders(t, c, resp) {
			want := []string{"ip=127.0.0.1", "ua=" + grpcUA, "rid=stream-7", "ck=sid=abc"}
			if q == 0 && i == 0 {
				want = append([]string{"trace=t1"}, want...)
			}
			if !sameList(got, want) {
				t.Errorf("request %d record %d: headers %q, want %q", q, i, got, want)
			}
		}
	}

	ids := map[string]bool{}
	for range 2 {
		resps, hdr := g.streamMD(t, reqs())
		rid := oneRID(t, hdr)
		if !uuidV4.MatchString(rid) || ids[rid] {
			t.Fatalf("generated x-request-id %q: not a fresh version 4 UUID", rid)
		}
		ids[rid] = true
		for q, resp := range resps {
			for i, got := range recordHeaders(t, c, resp) {
				want := []string{"ip=127.0.0.1", "ua=" + grpcUA, "rid=" + rid}
				if q == 0 && i == 0 {
					want = append([]string{"trace=t1"}, want...)
				}
				if !sameList(got, want) {
					t.Errorf("request %d record %d: headers %q, want the stream's ip, ua and rid %s", q, i, got, rid)
				}
			}
		}
	}
}

// TestGRPCExtFieldIP: ip is the peer's address; x-forwarded-for is
// believed only from a peer in trusted_proxies, by HTTP's rule (the
// right-most address that is not a trusted proxy; several values are one
// list), for Produce and ProduceStream alike.
func TestGRPCExtFieldIP(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	for _, tc := range []struct {
		name    string
		trusted []string
		xff     []string
		ip      string
	}{
		{"no trusted proxies", nil, []string{"203.0.113.9"}, "127.0.0.1"},
		{"untrusted peer", []string{"10.0.0.0/8"}, []string{"198.51.100.7, 203.0.113.9"}, "127.0.0.1"},
		{"trusted peer, no x-forwarded-for", []string{"127.0.0.1"}, nil, "127.0.0.1"},
		{"trusted peer", []string{"127.0.0.1", "10.0.0.0/8"}, []string{"198.51.100.7, 203.0.113.9, 10.0.0.1"}, "203.0.113.9"},
		{"two values, one list", []string{"127.0.0.1", "10.0.0.0/8"}, []string{"198.51.100.7", "2001:db8::5, 10.1.1.1"}, "2001:db8::5"},
		{"all trusted", []string{"127.0.0.0/8", "10.0.0.0/8"}, []string{"10.0.0.2, 10.0.0.1"}, "10.0.0.2"},
		{"not an address", []string{"127.0.0.1", "10.0.0.0/8"}, []string{"not-an-address, 10.0.0.1"}, "10.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startExtGRPC(t, c, []string{"ip"}, tc.trusted)
			var md []string
			for _, v := range tc.xff {
				md = append(md, "x-forwarded-for", v)
			}
			req := func() *kproxypb.ProduceRequest {
				return &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "x")}}
			}
			resp, hdr, err := g.produceMD(t, req(), md...)
			if err != nil {
				t.Fatalf("Produce: %v", refusalOf(err))
			}
			if v := hdr.Get("x-request-id"); len(v) > 0 {
				t.Errorf("x-request-id %q in the answer without rid in ext_headers nor in the call", v)
			}
			resps, _ := g.streamMD(t, []*kproxypb.ProduceRequest{req()}, md...)
			for i, resp := range []*kproxypb.ProduceResponse{resp, resps[0]} {
				if got := recordHeaders(t, c, resp)[0]; !sameList(got, []string{"ip=" + tc.ip}) {
					t.Errorf("%s: x-forwarded-for %q: headers %q, want ip=%s", []string{"Produce", "ProduceStream"}[i], tc.xff, got, tc.ip)
				}
			}
		})
	}
}

// TestGRPCRequestIDEchoed: the call's x-request-id comes back in the
// response header metadata whatever the answer, refusals included, as
// HTTP's X-Request-ID does; without rid in ext_headers none is made up.
func TestGRPCRequestIDEchoed(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startExtGRPC(t, c, []string{"rid"}, nil)
	bad := &kproxypb.ProduceRequest{Topic: "no_such_topic", Records: []*kproxypb.Record{grec("", "", "x")}}
	_, hdr, err := g.produceMD(t, bad, "x-request-id", "err-1")
	if r := refusalOf(err); r.code != codes.NotFound {
		t.Fatalf("Produce to an unknown topic: %v, want NotFound", r)
	}
	if rid := oneRID(t, hdr); rid != "err-1" {
		t.Errorf("refused call: x-request-id %q, want err-1", rid)
	}
	_, hdr, _ = g.produceMD(t, bad)
	if rid := oneRID(t, hdr); !uuidV4.MatchString(rid) {
		t.Errorf("refused call without x-request-id: x-request-id %q, want a new UUID", rid)
	}
	forged := &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "x", "rid", "mine")}}
	_, hdr, err = g.produceMD(t, forged, "x-request-id", "err-2")
	if r := refusalOf(err); r.code != codes.InvalidArgument || !strings.Contains(r.msg, "set by kproxy") {
		t.Errorf("a record setting rid: %v, want InvalidArgument, set by kproxy", r)
	}
	if rid := oneRID(t, hdr); rid != "err-2" {
		t.Errorf("refused call: x-request-id %q, want err-2", rid)
	}

	// ext_headers off: the call's id is still echoed; none is made up, and
	// the records get no header.
	off := startExtGRPC(t, c, nil, nil)
	ok := &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "x")}}
	resp, hdr, err := off.produceMD(t, ok, "x-request-id", "plain-1")
	if err != nil {
		t.Fatalf("Produce: %v", refusalOf(err))
	}
	if rid := oneRID(t, hdr); rid != "plain-1" {
		t.Errorf("x-request-id %q, want plain-1", rid)
	}
	if got := recordHeaders(t, c, resp)[0]; len(got) != 0 {
		t.Errorf("headers %q without ext_headers, want none", got)
	}
	_, hdr, err = off.produceMD(t, ok)
	if err != nil {
		t.Fatalf("Produce: %v", refusalOf(err))
	}
	if v := hdr.Get("x-request-id"); len(v) > 0 {
		t.Errorf("x-request-id %q made up without rid in ext_headers", v)
	}
	_, hdr = off.streamMD(t, []*kproxypb.ProduceRequest{ok}, "x-request-id", "plain-2")
	if rid := oneRID(t, hdr); rid != "plain-2" {
		t.Errorf("stream: x-request-id %q, want plain-2", rid)
	}
}
