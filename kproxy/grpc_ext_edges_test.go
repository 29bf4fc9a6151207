package kproxy_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCRequestIDOnEveryRefusal: the call's x-request-id comes back on
// the refusals TestGRPCRequestIDEchoed does not try: bad credentials
// (Produce and ProduceStream), a batch larger than the client's burst, the
// rate limit, a request that is not valid.
func TestGRPCRequestIDOnEveryRefusal(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.ExtHeaders = []string{"rid"}
		cfg.Clients = []kproxy.Client{{Name: "slow", Secret: "pass", Topics: []string{topic}, RateLimit: 0.01, Burst: 2}}
	})
	one := &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "x")}}
	call := func(ctx context.Context, req *kproxypb.ProduceRequest) (codes.Code, metadata.MD) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var hdr metadata.MD
		_, err := g.kp.Produce(ctx, req, grpc.Header(&hdr))
		return refusalOf(err).code, hdr
	}
	withID := func(ctx context.Context, id string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "x-request-id", id)
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		req  *kproxypb.ProduceRequest
		code codes.Code
	}{
		{"no credentials", withID(context.Background(), "a-1"), one, codes.Unauthenticated},
		{"wrong secret", withID(as(context.Background(), "slow", "nope"), "a-2"), one, codes.Unauthenticated},
		{"bad acks", withID(as(context.Background(), "slow", "pass"), "a-3"),
			&kproxypb.ProduceRequest{Topic: topic, Acks: acksOf(5), Records: one.Records}, codes.InvalidArgument},
		{"more than the burst", withID(as(context.Background(), "slow", "pass"), "a-4"),
			&kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "1"), grec("", "", "2"), grec("", "", "3")}},
			codes.ResourceExhausted},
		{"within the burst", withID(as(context.Background(), "slow", "pass"), "a-5"),
			&kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "1"), grec("", "", "2")}}, codes.OK},
		{"rate limited", withID(as(context.Background(), "slow", "pass"), "a-6"), one, codes.ResourceExhausted},
	} {
		code, hdr := call(tc.ctx, tc.req)
		if code != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, code, tc.code)
		}
		md, _ := metadata.FromOutgoingContext(tc.ctx)
		want := md.Get("x-request-id")
		if v := hdr.Get("x-request-id"); len(v) != 1 || v[0] != want[0] {
			t.Errorf("%s: x-request-id %q in the answer, want %q", tc.name, v, want)
		}
	}

	// ProduceStream with bad credentials: the header metadata carries the
	// stream's id, given or made.
	for _, id := range []string{"s-1", ""} {
		ctx := as(context.Background(), "slow", "nope")
		if id != "" {
			ctx = withID(ctx, id)
		}
		s := g.stream(t, ctx)
		_, err := recvAll(s)
		if r := refusalOf(err); r.code != codes.Unauthenticated {
			t.Errorf("stream, wrong secret: %v, want Unauthenticated", r)
		}
		hdr, _ := s.Header()
		v := hdr.Get("x-request-id")
		if len(v) != 1 || (id != "" && v[0] != id) || (id == "" && !uuidV4.MatchString(v[0])) {
			t.Errorf("stream refused (id %q): x-request-id %q, want the stream's", id, v)
		}
	}
}

// TestGRPCExtFieldsRecordSize: the ext fields count toward a record's
// size over gRPC as over HTTP: a cookie or user agent that makes a record
// larger than max_message_bytes refuses the request 413
// (ResourceExhausted) with the record's index, nothing written; just
// under it the record is written, its ext fields whole.
func TestGRPCExtFieldsRecordSize(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.ExtHeaders = []string{"ip", "ua", "rid", "ck"}
		cfg.MaxMessageBytes = 4000
	}, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent(testUA))
	big := strings.Repeat("c", 3000)
	req := &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "small"), grec("", "", strings.Repeat("v", 900))}}
	_, _, err := g.produceMD(t, req, "cookie", "a="+big, "x-request-id", "big-1")
	r := refusalOf(err)
	if r.code != codes.ResourceExhausted || r.detail == nil || r.detail.Status != 413 || r.detail.BadIndex != 1 {
		t.Errorf("a cookie making record 1 too large: %v, want ResourceExhausted 413 at index 1", r)
	}
	s := g.stream(t, metadata.AppendToOutgoingContext(context.Background(), "cookie", "a="+big))
	sent := sendAll(s, []*kproxypb.ProduceRequest{req})
	resps, err := recvAll(s)
	<-sent
	if err != nil || len(resps) != 1 || resps[0].Status != 413 || resps[0].BadIndex != 1 {
		t.Errorf("stream, a cookie making record 1 too large: %v %v, want one 413 at index 1", resps, err)
	}

	// Many cookie values, a long user agent: joined, carried whole.
	var md []string
	for i := range 50 {
		md = append(md, "cookie", "k"+strconv.Itoa(i)+"=v")
	}
	ok := &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "x")}}
	resp, _, err := g.produceMD(t, ok, md...)
	if err != nil {
		t.Fatalf("Produce: %v", refusalOf(err))
	}
	var want []string
	for i := range 50 {
		want = append(want, "k"+strconv.Itoa(i)+"=v")
	}
	got := recordHeaders(t, c, resp)[0]
	if got[len(got)-1] != "ck="+strings.Join(want, "; ") {
		t.Errorf("50 cookie values: %q, want them joined", got[len(got)-1])
	}
}

// TestGRPCExtFieldIPv6Peer: a peer on IPv6 is ip as HTTP writes it, and
// trusted_proxies of IPv6 let its x-forwarded-for be read.
func TestGRPCExtFieldIPv6Peer(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	for _, tc := range []struct {
		trusted []string
		xff     string
		ip      string
	}{
		{nil, "203.0.113.9", "::1"},
		{[]string{"::1"}, "203.0.113.9", "203.0.113.9"},
		{[]string{"127.0.0.1"}, "203.0.113.9", "::1"},
		{[]string{"::ffff:127.0.0.1"}, "203.0.113.9", "::1"},
	} {
		g := startGRPC(t, c, func(cfg *kproxy.Config) {
			cfg.ListenHost = "::1"
			cfg.ExtHeaders, cfg.TrustedProxies = []string{"ip"}, tc.trusted
		})
		req := &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "", "x")}}
		resp, _, err := g.produceMD(t, req, "x-forwarded-for", tc.xff)
		if err != nil {
			t.Fatalf("Produce: %v", refusalOf(err))
		}
		if got := recordHeaders(t, c, resp)[0]; len(got) != 1 || got[0] != "ip="+tc.ip {
			t.Errorf("trusted %q, peer ::1, x-forwarded-for %s: %q, want ip=%s", tc.trusted, tc.xff, got, tc.ip)
		}
	}
}

// TestGRPCExtFieldsConcurrentStreams: streams running at once each get
// their own ext fields on every record of every request (no record gets
// another stream's rid or ck), with the values intact once the calls
// have ended.
func TestGRPCExtFieldsConcurrentStreams(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}})
	g := startExtGRPC(t, c, []string{"rid", "ck"}, nil)
	const streams, reqs, per = 6, 5, 20
	results := make([][]*kproxypb.ProduceResponse, streams)
	var wg sync.WaitGroup
	for n := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rs []*kproxypb.ProduceRequest
			for q := range reqs {
				r := &kproxypb.ProduceRequest{Topic: topic, Acks: acksOf([]int32{1, -1}[q%2]), Id: uint64(q)}
				for i := range per {
					r.Records = append(r.Records, grec("", "k"+strconv.Itoa(i%3), fmt.Sprintf("%d/%d/%d", n, q, i)))
				}
				rs = append(rs, r)
			}
			ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "stream-"+strconv.Itoa(n),
				"cookie", "s="+strconv.Itoa(n), "cookie", "t="+strings.Repeat(strconv.Itoa(n), 100))
			s := g.stream(t, ctx)
			sent := sendAll(s, rs)
			resps, err := recvAll(s)
			if err != nil || <-sent != nil || len(resps) != reqs {
				t.Errorf("stream %d: %d answers, %v", n, len(resps), err)
				return
			}
			results[n] = resps
		}()
	}
	wg.Wait()
	runtime.GC()
	// The topic read once, not a client per record: 600 records.
	type at struct {
		partition int32
		offset    int64
	}
	stored := map[at]*kgo.Record{}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		stored[at{r.Partition, r.Offset}] = r
	}
	for n, resps := range results {
		want := []string{"rid=stream-" + strconv.Itoa(n), "ck=s=" + strconv.Itoa(n) + "; t=" + strings.Repeat(strconv.Itoa(n), 100)}
		for q, resp := range resps {
			if resp.Status != 200 {
				t.Fatalf("stream %d request %d: answer %v, want 200", n, q, resp)
			}
			for i, res := range resp.Results {
				r := stored[at{res.Partition, res.Offset}]
				if r == nil {
					t.Fatalf("stream %d request %d record %d: no record at %s/%d@%d", n, q, i, topic, res.Partition, res.Offset)
				}
				if h := headersOf(r); !sameList(h, want) {
					t.Fatalf("stream %d request %d record %d: %q, want %q", n, q, i, h, want)
				}
			}
		}
	}
}

// TestGRPCExtFieldsSpooled: records a stream's request handed to the
// spool (answered 202, Kafka frozen past spool_after_ms) reach Kafka
// with the stream's ext fields whole, though the stream ended and its
// memory was collected before the spool drained them.
func TestGRPCExtFieldsSpooled(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := spoolGRPC(t, c, func(cfg *kproxy.Config) { cfg.ExtHeaders = []string{"rid", "ck"} })
	kafkatest.NewFaults(t, c).Sleep(int16(kmsg.Produce), 1, 3*time.Second)
	var recs []*kproxypb.Record
	for i := range 20 {
		recs = append(recs, grec("", "k", "v"+strconv.Itoa(i)))
	}
	ck := "s=" + strings.Repeat("z", 500)
	resps, _ := g.streamMD(t, []*kproxypb.ProduceRequest{{Topic: topic, Acks: acksOf(-1), Records: recs}},
		"x-request-id", "spooled-1", "cookie", ck)
	if resps[0].Status != 202 {
		t.Fatalf("status %d %q, want 202 (spooled)", resps[0].Status, resps[0].Error)
	}
	runtime.GC()
	var got []*kgo.Record
	waitFor(t, "the spooled records drained", func() bool {
		got = kafkatest.ReadAll(t, c, kafkaconf.Default(), topic)
		return len(got) >= len(recs)
	})
	for _, r := range got {
		if h := headersOf(r); !sameList(h, []string{"rid=spooled-1", "ck=" + ck}) {
			t.Fatalf("record %q: headers %q, want the stream's rid and ck", r.Value, h)
		}
	}
}
