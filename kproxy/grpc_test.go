package kproxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// The tests in this file attack DESIGN.md's "gRPC": the records, checks,
// credentials, statuses and metrics of /batch over Produce and
// ProduceStream, a stream's order and window, deadlines, TLS, health and
// reflection, and shutdown.

// gproxy is a kproxy serving gRPC on a loopback port, and a client of it.
type gproxy struct {
	*proxy
	conn *grpc.ClientConn
	kp   kproxypb.KProxyClient
}

// freeTCPPort is a port free a moment ago.
func freeTCPPort(t testing.TB) int { return bintest.FreePort(t) }

// startGRPC starts kproxy with grpc_port on a free port (grpc_port 0 is
// "off": the port is picked first, and picked again should another
// process take it meanwhile) and dials it with dial (plain text when
// none).
func startGRPC(t *testing.T, c *kfake.Cluster, edit func(*kproxy.Config), dial ...grpc.DialOption) *gproxy {
	t.Helper()
	var srv *kproxy.Server
	for attempt := 0; ; attempt++ {
		cfg := kproxy.DefaultConfig()
		cfg.Port, cfg.ListenHost, cfg.AdminAddr = 0, "127.0.0.1", "127.0.0.1:0"
		cfg.BrokerHosts = c.ListenAddrs()
		cfg.ReadTimeoutMs, cfg.WriteTimeoutMs = 2000, 2000
		cfg.GRPCPort = freeTCPPort(t)
		if edit != nil {
			edit(&cfg)
		}
		var err error
		srv, err = kproxy.New(cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			break
		}
		if attempt == 4 || !strings.Contains(err.Error(), "grpc_port") {
			t.Fatalf("kproxy.New: %v", err)
		}
	}
	stop := runtest.Start(t, srv.Run, 30*time.Second)
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(srv.GRPCAddr().String(), dial...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &gproxy{proxy: &proxy{srv: srv, url: "http://" + srv.Addr().String(), stop: stop},
		conn: conn, kp: kproxypb.NewKProxyClient(conn)}
}

// as adds the credentials of client user to ctx.
func as(ctx context.Context, user, secret string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization",
		"Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+secret)))
}

func grec(topic, key, value string, headers ...string) *kproxypb.Record {
	r := &kproxypb.Record{Topic: topic, Value: []byte(value)}
	if key != "" {
		r.Key = []byte(key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers = append(r.Headers, &kproxypb.Header{Key: headers[i], Value: []byte(headers[i+1])})
	}
	return r
}

func acksOf(a int32) *int32 { return &a }

// produce calls Produce with a 30 s deadline.
func (g *gproxy) produce(t testing.TB, ctx context.Context, req *kproxypb.ProduceRequest) (*kproxypb.ProduceResponse, error) {
	t.Helper()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return g.kp.Produce(ctx, req)
}

// refusal is a gRPC error's code, message and ProduceResponse detail.
type refusal struct {
	code   codes.Code
	msg    string
	detail *kproxypb.ProduceResponse
}

func refusalOf(err error) refusal {
	st := status.Convert(err)
	r := refusal{code: st.Code(), msg: st.Message()}
	for _, d := range st.Details() {
		if pr, ok := d.(*kproxypb.ProduceResponse); ok {
			r.detail = pr
		}
	}
	return r
}

func (r refusal) String() string {
	if r.detail == nil {
		return fmt.Sprintf("%v %q (no detail)", r.code, r.msg)
	}
	return fmt.Sprintf("%v %q (status %d, bad_index %d, retry_after %d, %d results)", r.code, r.msg,
		r.detail.Status, r.detail.BadIndex, r.detail.RetryAfter, len(r.detail.Results))
}

// TestGRPCProduce: a unary Produce's records — default and own topics,
// keys, no key, headers, an empty value — are read back by a consumer at
// the partitions and offsets answered, routed as /commit routes them; at
// acks=0 the answer has no offsets and the records arrive; the metrics
// count the calls.
func TestGRPCProduce(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}, {Name: "other", Partitions: 2}})
	g := startGRPC(t, c, nil)
	recs := []*kproxypb.Record{
		grec("", "user1", "\x81\xa1a\x01"),
		grec("other", "user2", "second", "trace-id", "t2", "Origin", "é"),
		grec("", "", "no key"),
		grec("", "user1", ""), // empty value: written empty, not null
		{Value: []byte{0, 0xff, 0x0d, 0x0a}, Headers: []*kproxypb.Header{{Key: "empty"}}},
	}
	resp, err := g.produce(t, nil, &kproxypb.ProduceRequest{Acks: acksOf(-1), Topic: topic, Records: recs, Id: 42})
	if err != nil {
		t.Fatalf("Produce: %v", refusalOf(err))
	}
	if resp.Id != 42 || resp.Status != 200 || resp.Error != "" || resp.BadIndex != -1 || len(resp.Results) != len(recs) {
		t.Fatalf("answer %v", resp)
	}
	for i, r := range recs {
		res := resp.Results[i]
		if res.Status != 200 || res.Offset < 0 || res.Error != "" {
			t.Fatalf("result %d: %v", i, res)
		}
		tp := r.Topic
		if tp == "" {
			tp = topic
		}
		m := readRecord(t, c, tp, res.Partition, res.Offset)
		if !bytes.Equal(m.Value, r.Value) || m.Value == nil {
			t.Errorf("record %d: value %q (nil %v), sent %q", i, m.Value, m.Value == nil, r.Value)
		}
		if len(r.Key) == 0 && m.Key != nil || len(r.Key) > 0 && string(m.Key) != string(r.Key) {
			t.Errorf("record %d: key %q, sent %q", i, m.Key, r.Key)
		}
		if len(r.Key) > 0 {
			if want := partitionOf(string(r.Key), map[string]int{topic: 3, "other": 2}[tp]); res.Partition != want {
				t.Errorf("record %d: partition %d, /commit's partitioner gives %d", i, res.Partition, want)
			}
		}
		if len(m.Headers) != len(r.Headers) {
			t.Errorf("record %d: %d headers, sent %d", i, len(m.Headers), len(r.Headers))
			continue
		}
		for j, h := range r.Headers {
			if m.Headers[j].Key != h.Key || string(m.Headers[j].Value) != string(h.Value) || m.Headers[j].Value == nil {
				t.Errorf("record %d header %d: %q=%q, sent %q=%q", i, j, m.Headers[j].Key, m.Headers[j].Value, h.Key, h.Value)
			}
		}
	}

	before := endOffsets(t, c, topic)
	resp, err = g.produce(t, nil, &kproxypb.ProduceRequest{Acks: acksOf(0), Topic: topic,
		Records: []*kproxypb.Record{grec("", "a", "x"), grec("", "b", "y")}})
	if err != nil || resp.Status != 200 {
		t.Fatalf("acks=0: %v %v", resp, refusalOf(err))
	}
	for i, r := range resp.Results {
		if r.Status != 200 || r.Partition != -1 || r.Offset != -1 {
			t.Errorf("acks=0 result %d: %v, want status 200, partition and offset -1", i, r)
		}
	}
	waitFor(t, "the acks=0 records in Kafka", func() bool { return endOffsets(t, c, topic) == before+2 })

	m := g.metrics(t)
	for _, want := range []string{
		`kproxy_grpc_requests_total{code="200",method="Produce"} 2`,
		`kproxy_grpc_rpcs_total{code="OK",method="kafkahttpwrapper.v1.KProxy/Produce"} 2`,
		`kproxy_grpc_request_duration_seconds_count{method="Produce"} 2`,
		`kproxy_batch_results_total{code="200"} 7`, `kproxy_records_total{acks="-1"} 5`, `kproxy_batch_records_sum 7`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestGRPCRefusals: every refusal of a whole request is its gRPC status,
// carries the ProduceResponse /batch's answer would be (status, index of
// the first bad record, Retry-After) and the request's id, and writes
// nothing. A 401 answers the id 0: the credentials are checked before
// the request is read.
func TestGRPCRefusals(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}, {Name: "secret", Partitions: 1}, {Name: "open", Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.AutoCreateTopics = false
		cfg.MaxMessageBytes = 2000
		cfg.MaxBatchRecords = 20
		cfg.MaxRequestSizeBytes = 64 << 10
		cfg.Clients = []kproxy.Client{
			{Name: "shop", Secret: "pass", Topics: []string{topic, "no_such_topic", "__consumer_offsets"}},
			{Name: "slow", Secret: "pass", Topics: []string{"open"}, RateLimit: 0.5, Burst: 15},
		}
	})
	shop := as(context.Background(), "shop", "pass")
	ok := func(n int) []*kproxypb.Record {
		var rs []*kproxypb.Record
		for i := range n {
			rs = append(rs, grec("", "k"+strconv.Itoa(i), "v"))
		}
		return rs
	}
	with := func(i int, r *kproxypb.Record) []*kproxypb.Record {
		rs := ok(6)
		rs[i] = r
		return rs
	}
	manyHeaders := grec("", "k", "v")
	for i := range 65 {
		manyHeaders.Headers = append(manyHeaders.Headers, &kproxypb.Header{Key: "h" + strconv.Itoa(i)})
	}
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		req    *kproxypb.ProduceRequest
		code   codes.Code
		status int32
		index  int32
		msg    string
	}{
		{"no credentials", nil, &kproxypb.ProduceRequest{Topic: topic, Records: ok(1)}, codes.Unauthenticated, 401, -1, "credentials required"},
		{"wrong secret", as(context.Background(), "shop", "nope"), &kproxypb.ProduceRequest{Topic: topic, Records: ok(1)}, codes.Unauthenticated, 401, -1, "wrong client name or secret"},
		{"unknown client", as(context.Background(), "who", "pass"), &kproxypb.ProduceRequest{Topic: topic, Records: ok(1)}, codes.Unauthenticated, 401, -1, "wrong client name or secret"},
		{"bad acks", shop, &kproxypb.ProduceRequest{Acks: acksOf(2), Topic: topic, Records: ok(1)}, codes.InvalidArgument, 400, -1, "acks must be 0, 1 or -1"},
		{"atomic at acks 1", shop, &kproxypb.ProduceRequest{Atomic: true, Topic: topic, Records: ok(1)}, codes.InvalidArgument, 400, -1, "atomic needs acks -1"},
		{"no records", shop, &kproxypb.ProduceRequest{Topic: topic}, codes.InvalidArgument, 400, -1, "no records"},
		{"bad topic parameter", shop, &kproxypb.ProduceRequest{Topic: "a b", Records: ok(1)}, codes.InvalidArgument, 400, -1, "topic name"},
		{"no topic", shop, &kproxypb.ProduceRequest{Records: ok(3)}, codes.InvalidArgument, 400, 0, "record 0: no topic"},
		{"bad record topic", shop, &kproxypb.ProduceRequest{Topic: topic, Records: with(3, grec("a/b", "k", "v"))}, codes.InvalidArgument, 400, 3, "record 3: topic name"},
		{"65 headers", shop, &kproxypb.ProduceRequest{Topic: topic, Records: with(4, manyHeaders)}, codes.InvalidArgument, 400, 4, "record 4: more than 64 headers"},
		{"empty header name", shop, &kproxypb.ProduceRequest{Topic: topic, Records: with(2, grec("", "k", "v", "", "x"))}, codes.InvalidArgument, 400, 2, "record 2: a header name is empty"},
		{"header twice", shop, &kproxypb.ProduceRequest{Topic: topic, Records: with(5, grec("", "k", "v", "a", "1", "a", "2"))}, codes.InvalidArgument, 400, 5, `record 5: header "a" given twice`},
		{"topic not the client's", shop, &kproxypb.ProduceRequest{Topic: topic, Records: with(1, grec("secret", "k", "v"))}, codes.PermissionDenied, 403, 1, "record 1: topic not allowed for this client (secret)"},
		{"internal topic", shop, &kproxypb.ProduceRequest{Topic: topic, Records: with(2, grec("__consumer_offsets", "k", "v"))}, codes.PermissionDenied, 403, 2, "record 2: kafka-internal"},
		{"unknown topic", shop, &kproxypb.ProduceRequest{Topic: topic, Records: with(3, grec("no_such_topic", "k", "v"))}, codes.NotFound, 404, 3, "record 3: unknown topic"},
		{"record too large", shop, &kproxypb.ProduceRequest{Topic: topic, Records: with(4, grec("", "k", strings.Repeat("x", 2000)))}, codes.ResourceExhausted, 413, 4, "record 4: record of"},
		{"too many records", shop, &kproxypb.ProduceRequest{Topic: topic, Records: ok(21)}, codes.ResourceExhausted, 413, 20, "max_batch_records (20)"},
		{"over the client's burst", as(context.Background(), "slow", "pass"), &kproxypb.ProduceRequest{Topic: "open", Records: ok(16)}, codes.ResourceExhausted, 413, 15, "burst of client slow (15)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Id = 7000 + uint64(len(tc.name)) // echoed in every answer read, refusals included
			_, err := g.produce(t, tc.ctx, tc.req)
			r := refusalOf(err)
			if r.code != tc.code || !strings.Contains(r.msg, tc.msg) || r.detail == nil ||
				r.detail.Status != tc.status || r.detail.BadIndex != tc.index || r.detail.Error != r.msg || len(r.detail.Results) != 0 {
				t.Errorf("got %v, want %v %q (status %d, bad_index %d)", r, tc.code, tc.msg, tc.status, tc.index)
			}
			want := tc.req.Id
			if tc.status == 401 {
				want = 0 // refused before the message is read (TestGRPCUnknownClientRefusedUnread)
			}
			if r.detail != nil && r.detail.Id != want {
				t.Errorf("answer's id %d, want %d", r.detail.Id, want)
			}
		})
	}
	// The rate limit: 10 of the 15 taken, the next 10 are 5 too many.
	slow := as(context.Background(), "slow", "pass")
	if _, err := g.produce(t, slow, &kproxypb.ProduceRequest{Topic: "open", Records: ok(10)}); err != nil {
		t.Fatalf("within the burst: %v", refusalOf(err))
	}
	_, err := g.produce(t, slow, &kproxypb.ProduceRequest{Topic: "open", Records: ok(10)})
	if r := refusalOf(err); r.code != codes.ResourceExhausted || r.detail == nil || r.detail.Status != 429 ||
		r.detail.BadIndex != 5 || r.detail.RetryAfter < 1 || !strings.Contains(r.msg, "rate limit of client slow") {
		t.Errorf("over the rate limit: %v, want ResourceExhausted, status 429, bad_index 5, retry_after", r)
	}
	// A message over max_request_size_bytes is refused by gRPC itself.
	_, err = g.produce(t, shop, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", strings.Repeat("x", 70_000))}})
	if r := refusalOf(err); r.code != codes.ResourceExhausted {
		t.Errorf("a 70 kB message, max_request_size_bytes 64 KiB: %v", r)
	}
	if n := endOffsets(t, c, topic) + endOffsets(t, c, "secret"); n != 0 {
		t.Errorf("%d records written by refused requests", n)
	}
	if n := endOffsets(t, c, "open"); n != 10 {
		t.Errorf("%d records in open, want the 10 answered", n)
	}
	m := g.metrics(t)
	for _, want := range []string{
		`kproxy_grpc_requests_total{code="401",method="Produce"} 3`, `kproxy_grpc_requests_total{code="403",method="Produce"} 2`,
		`kproxy_grpc_requests_total{code="429",method="Produce"} 1`,
		`kproxy_grpc_rpcs_total{code="Unauthenticated",method="kafkahttpwrapper.v1.KProxy/Produce"} 3`,
		`kproxy_grpc_rpcs_total{code="NotFound",method="kafkahttpwrapper.v1.KProxy/Produce"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// stream opens a ProduceStream for one test (ctx: credentials), ended
// within a minute.
func (g *gproxy) stream(t testing.TB, ctx context.Context) grpc.BidiStreamingClient[kproxypb.ProduceRequest, kproxypb.ProduceResponse] {
	t.Helper()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	t.Cleanup(cancel)
	s, err := g.kp.ProduceStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// seqValue is a record value carrying its key and its place in the
// stream.
func seqValue(key string, seq int) string { return key + "/" + strconv.Itoa(seq) }

func parseSeq(t testing.TB, v []byte) (string, int) {
	t.Helper()
	key, n, ok := strings.Cut(string(v), "/")
	seq, err := strconv.Atoi(n)
	if !ok || err != nil {
		t.Fatalf("value %q", v)
	}
	return key, seq
}

// sendAll sends reqs on s and then closes its side, in the background;
// the returned channel gives the first error.
func sendAll(s grpc.BidiStreamingClient[kproxypb.ProduceRequest, kproxypb.ProduceResponse], reqs []*kproxypb.ProduceRequest) <-chan error {
	errc := make(chan error, 1)
	go func() {
		for _, r := range reqs {
			if err := s.Send(r); err != nil {
				errc <- err
				return
			}
		}
		errc <- s.CloseSend()
	}()
	return errc
}

// recvAll receives responses until the stream ends; it returns them and
// the stream's end (nil: OK).
func recvAll(s grpc.BidiStreamingClient[kproxypb.ProduceRequest, kproxypb.ProduceResponse]) ([]*kproxypb.ProduceResponse, error) {
	var out []*kproxypb.ProduceResponse
	for {
		r, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
}

// keyedRequests are n requests of per records each, keys k0…k(keys-1) in
// turn, each value its key and its place in the stream.
func keyedRequests(n, per, keys int, acks func(req int) int32) []*kproxypb.ProduceRequest {
	var reqs []*kproxypb.ProduceRequest
	for q := range n {
		req := &kproxypb.ProduceRequest{Id: uint64(q), Topic: topic, Acks: acksOf(acks(q))}
		for i := range per {
			seq := q*per + i
			k := "k" + strconv.Itoa(seq%keys)
			req.Records = append(req.Records, grec("", k, seqValue(k, seq)))
		}
		reqs = append(reqs, req)
	}
	return reqs
}

// checkKeyOrder reads topic back and checks that it holds exactly the
// records of reqs, each key's in the order of the stream; it returns the
// records by partition and offset.
func checkKeyOrder(t *testing.T, c *kfake.Cluster, reqs []*kproxypb.ProduceRequest) map[[2]int64]*kgo.Record {
	t.Helper()
	want := 0
	for _, r := range reqs {
		want += len(r.Records)
	}
	last := map[string]int{}
	at := map[[2]int64]*kgo.Record{}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		k, seq := parseSeq(t, r.Value)
		if prev, ok := last[k]; ok && seq <= prev {
			t.Errorf("key %s: record %d after %d (partition %d offset %d)", k, seq, prev, r.Partition, r.Offset)
		}
		last[k] = seq
		at[[2]int64{int64(r.Partition), r.Offset}] = r
	}
	if len(at) != want {
		t.Errorf("%d records in Kafka, %d sent and answered 200", len(at), want)
	}
	return at
}

// TestGRPCStream10000: a stream of 100 requests of 100 records: every
// request answered 200, in order, each result's partition and offset
// holding its record, every key's records in the order of the stream.
func TestGRPCStream10000(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 6}})
	g := startGRPC(t, c, nil)
	reqs := keyedRequests(100, 100, 37, func(int) int32 { return 1 })
	s := g.stream(t, nil)
	sent := sendAll(s, reqs)
	resps, err := recvAll(s)
	if err != nil || <-sent != nil {
		t.Fatalf("stream ended with %v after %d answers", err, len(resps))
	}
	if len(resps) != len(reqs) {
		t.Fatalf("%d answers to %d requests", len(resps), len(reqs))
	}
	at := checkKeyOrder(t, c, reqs)
	for q, resp := range resps {
		if resp.Id != uint64(q) || resp.Status != 200 || len(resp.Results) != 100 {
			t.Fatalf("answer %d: id %d status %d %q, %d results", q, resp.Id, resp.Status, resp.Error, len(resp.Results))
		}
		for i, res := range resp.Results {
			r := at[[2]int64{int64(res.Partition), res.Offset}]
			if res.Status != 200 || r == nil || string(r.Value) != string(reqs[q].Records[i].Value) {
				t.Fatalf("request %d record %d: result %v, in Kafka there %v", q, i, res, r)
			}
		}
	}
	m := g.metrics(t)
	for _, want := range []string{
		`kproxy_grpc_requests_total{code="200",method="ProduceStream"} 100`,
		`kproxy_grpc_rpcs_total{code="OK",method="kafkahttpwrapper.v1.KProxy/ProduceStream"} 1`,
		`kproxy_grpc_streams_open 0`, `kproxy_records_total{acks="1"} 10000`, `kproxy_requests_in_flight 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestGRPCStreamKeyOrder: requests of one stream are pipelined, yet a
// key's records are written in the order of the stream while partition
// leaders move every 10 ms, across requests at acks 1 and -1 in turns of
// 25 (two Kafka clients).
func TestGRPCStreamKeyOrder(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	g := startGRPC(t, c, nil)
	stop := kafkatest.NewFaults(t, c).ShuffleEvery(10 * time.Millisecond)
	reqs := keyedRequests(150, 100, 20, func(q int) int32 {
		if q/25%2 == 1 {
			return -1
		}
		return 1
	})
	s := g.stream(t, nil)
	sent := sendAll(s, reqs)
	resps, err := recvAll(s)
	t.Logf("%d leader shuffles", stop())
	if err != nil || <-sent != nil || len(resps) != len(reqs) {
		t.Fatalf("stream ended with %v after %d answers", err, len(resps))
	}
	for q, resp := range resps {
		if resp.Id != uint64(q) || resp.Status != 200 {
			t.Fatalf("answer %d: id %d status %d %q", q, resp.Id, resp.Status, resp.Error)
		}
	}
	checkKeyOrder(t, c, reqs)
}

// TestGRPCStreamWindow: a stream has at most 8 requests out at once
// (their records count in req_pool_size): while the broker holds the
// first produce request, 8 of 20 requests are taken and no more; once it
// lets go, all 20 are answered, in order.
func TestGRPCStreamWindow(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, nil)
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)
	reqs := keyedRequests(20, 10, 3, func(int) int32 { return 1 })
	s := g.stream(t, nil)
	sent := sendAll(s, reqs)
	waitFor(t, "8 requests of 10 records in flight", func() bool { return g.srv.InFlight() == 80 })
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if n := g.srv.InFlight(); n != 80 {
			t.Fatalf("%d records in flight, want 8 requests' 80", n)
		}
	}
	close(release)
	resps, err := recvAll(s)
	if err != nil || <-sent != nil || len(resps) != 20 {
		t.Fatalf("stream ended with %v after %d answers", err, len(resps))
	}
	for q, resp := range resps {
		if resp.Id != uint64(q) || resp.Status != 200 {
			t.Errorf("answer %d: id %d status %d %q", q, resp.Id, resp.Status, resp.Error)
		}
	}
	checkKeyOrder(t, c, reqs)
}

// TestGRPCStreamBadRecord: a request with a bad record mid-stream is
// answered with its status and the record's index, nothing of it
// written; the stream goes on and the requests after it are written.
// Wrong credentials end a stream at once, Unauthenticated.
func TestGRPCStreamBadRecord(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}, {Name: "secret", Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.Clients = []kproxy.Client{{Name: "shop", Secret: "pass", Topics: []string{topic}}}
	})
	reqs := keyedRequests(10, 20, 7, func(int) int32 { return -1 })
	bad := reqs[4].Records[7]
	bad.Headers = []*kproxypb.Header{{Key: "h", Value: []byte("1")}, {Key: "h", Value: []byte("2")}}
	reqs[6].Records[12].Topic = "secret"
	s := g.stream(t, as(context.Background(), "shop", "pass"))
	sent := sendAll(s, reqs)
	resps, err := recvAll(s)
	if err != nil || <-sent != nil || len(resps) != 10 {
		t.Fatalf("stream ended with %v after %d answers", err, len(resps))
	}
	for q, resp := range resps {
		switch {
		case resp.Id != uint64(q):
			t.Errorf("answer %d has id %d", q, resp.Id)
		case q == 4:
			if resp.Status != 400 || resp.BadIndex != 7 || !strings.Contains(resp.Error, `record 7: header "h" given twice`) || len(resp.Results) != 0 {
				t.Errorf("request 4 (record 7 bad): %v", resp)
			}
		case q == 6:
			if resp.Status != 403 || resp.BadIndex != 12 || !strings.Contains(resp.Error, "record 12: topic not allowed") {
				t.Errorf("request 6 (record 12 forbidden): %v", resp)
			}
		case resp.Status != 200 || resp.BadIndex != -1 || len(resp.Results) != 20:
			t.Errorf("request %d: %v", q, resp)
		}
	}
	written := append(append(reqs[:4:4], reqs[5]), reqs[7:]...)
	checkKeyOrder(t, c, written)

	s = g.stream(t, as(context.Background(), "shop", "wrong"))
	s.Send(reqs[0])
	if _, err := s.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Errorf("stream with a wrong secret: %v, want Unauthenticated", err)
	}
	m := g.metrics(t)
	for _, want := range []string{
		`kproxy_grpc_requests_total{code="400",method="ProduceStream"} 1`, `kproxy_grpc_requests_total{code="403",method="ProduceStream"} 1`,
		`kproxy_grpc_requests_total{code="200",method="ProduceStream"} 8`,
		`kproxy_grpc_rpcs_total{code="Unauthenticated",method="kafkahttpwrapper.v1.KProxy/ProduceStream"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestGRPCAtomic: an atomic Produce over two topics commits and a
// read_committed consumer sees it whole; one whose record a broker
// refuses is aborted, InvalidArgument with the record's index, and none
// of it is visible; in a stream an atomic request between others is
// answered in its place, and all are written.
func TestGRPCAtomic(t *testing.T) {
	c := threeBrokers(t, kafkatest.Topic{Name: "other", Partitions: 2})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.TransactionalProducers = 1 })
	batch := func(label string) []*kproxypb.Record {
		recs, _ := failureBatch(t, label)
		var out []*kproxypb.Record
		for _, r := range recs {
			out = append(out, &kproxypb.Record{Key: []byte(r.key), Value: r.value})
		}
		return append(out, grec("other", "x", label+"other"))
	}
	committed := batch("committed-")
	resp, err := g.produce(t, nil, &kproxypb.ProduceRequest{Acks: acksOf(-1), Atomic: true, Topic: topic, Records: committed})
	if err != nil || resp.Status != 200 || len(resp.Results) != len(committed) {
		t.Fatalf("atomic: %v %v", resp, refusalOf(err))
	}
	stop := refuseOn(c, 2, 87) // INVALID_RECORD from the leader of partition 2
	aborted := batch("aborted-")
	_, err = g.produce(t, nil, &kproxypb.ProduceRequest{Acks: acksOf(-1), Atomic: true, Topic: topic, Records: aborted})
	stop()
	r := refusalOf(err)
	if r.code != codes.Unavailable || r.detail == nil || r.detail.Status != 503 || r.detail.BadIndex != 2 ||
		!strings.Contains(r.msg, "aborted") || len(r.detail.Results) != 0 {
		t.Fatalf("atomic with record 2's batch refused: %v, want Unavailable, status 503, bad_index 2, aborted, no results", r)
	}

	s := g.stream(t, nil)
	var reqs []*kproxypb.ProduceRequest
	for q, label := range []string{"s0-", "s1-", "s2-"} {
		reqs = append(reqs, &kproxypb.ProduceRequest{Id: uint64(q), Acks: acksOf(-1), Atomic: q == 1, Topic: topic, Records: batch(label)})
	}
	sent := sendAll(s, reqs)
	resps, err := recvAll(s)
	if err != nil || <-sent != nil || len(resps) != 3 {
		t.Fatalf("stream: %v after %d answers", err, len(resps))
	}
	for q, resp := range resps {
		if resp.Id != uint64(q) || resp.Status != 200 {
			t.Errorf("stream answer %d: %v", q, resp)
		}
	}

	got := byValue(t, c, topic)
	for k, r := range byValue(t, c, "other") {
		got[k] = r
	}
	for _, req := range append([]*kproxypb.ProduceRequest{{Records: committed}}, reqs...) {
		for _, r := range req.Records {
			if got[string(r.Value)] == nil {
				t.Errorf("record %q answered 200, not visible", r.Value)
			}
		}
	}
	for _, r := range aborted {
		if got[string(r.Value)] != nil {
			t.Errorf("record %q of the aborted request visible to a read_committed consumer", r.Value)
		}
	}
	if m := g.metrics(t); !strings.Contains(m, `kproxy_transactions_total{outcome="committed"} 2`) || !strings.Contains(m, `kproxy_transactions_total{outcome="aborted"} 1`) {
		t.Errorf("/metrics: transactions by outcome")
	}
}

// grpcFailureBatch is failureBatch's records (4 per partition of topic,
// interleaved) as a ProduceRequest's, and the partition of each.
func grpcFailureBatch(t *testing.T, label string) ([]*kproxypb.Record, []int32) {
	recs, parts := failureBatch(t, label)
	var out []*kproxypb.Record
	for _, r := range recs {
		out = append(out, &kproxypb.Record{Key: []byte(r.key), Value: r.value})
	}
	return out, parts
}

// TestGRPCPartialFailure: one broker refusing its produce requests fails
// its partitions' records only: Produce answers OK with status 207 and
// each result's own status, the other records written at the offsets
// answered; in a stream the same request gets the same answer and the
// stream goes on; every record refused alike is that status
// (InvalidArgument, here).
func TestGRPCPartialFailure(t *testing.T) {
	c := threeBrokers(t)
	g := startGRPC(t, c, nil)
	// At acks=-1 (the stream) a refusal as invalid, with other requests
	// written since a record was handed over, may have been that of a
	// retry of a written batch: 503 or 504.
	check := func(name string, resp *kproxypb.ProduceResponse, recs []*kproxypb.Record, parts []int32, unsureRetry bool) {
		t.Helper()
		if resp.Status != 207 || len(resp.Results) != len(recs) || resp.BadIndex != 2 || !strings.Contains(resp.Error, "4 of 12 records not written") {
			t.Fatalf("%s: %v, want 207, bad_index 2, 12 results", name, resp)
		}
		inKafka := byValue(t, c, topic)
		for i, res := range resp.Results {
			r := inKafka[string(recs[i].Value)]
			switch {
			case parts[i] == 2:
				if (res.Status != 503 && (!unsureRetry || res.Status != 504)) || res.Error == "" || res.Offset != -1 || r != nil {
					t.Errorf("%s: record %d on the refusing broker: %v (in Kafka: %v)", name, i, res, r)
				}
			case res.Status != 200 || r == nil || r.Partition != res.Partition || r.Offset != res.Offset:
				t.Errorf("%s: record %d: %v, in Kafka: %v", name, i, res, r)
			}
		}
	}
	stop := refuseOn(c, 2, 87) // INVALID_RECORD
	recs, parts := grpcFailureBatch(t, "unary-")
	resp, err := g.produce(t, nil, &kproxypb.ProduceRequest{Topic: topic, Records: recs})
	if err != nil {
		t.Fatalf("partial failure: %v, want OK with status 207", refusalOf(err))
	}
	check("unary", resp, recs, parts, false)

	s := g.stream(t, nil)
	srecs, sparts := grpcFailureBatch(t, "stream-")
	var reqs []*kproxypb.ProduceRequest
	for q := range 3 {
		req := &kproxypb.ProduceRequest{Id: uint64(q), Topic: topic, Acks: acksOf(-1), Records: srecs}
		if q != 1 {
			req.Records = []*kproxypb.Record{{Key: []byte(keysFor(0, 3, 1)[0]), Value: []byte("p0-" + strconv.Itoa(q))}}
		}
		reqs = append(reqs, req)
	}
	sent := sendAll(s, reqs)
	resps, err := recvAll(s)
	if err != nil || <-sent != nil || len(resps) != 3 {
		t.Fatalf("stream: %v after %d answers", err, len(resps))
	}
	check("stream", resps[1], srecs, sparts, true)
	for _, q := range []int{0, 2} {
		if resps[q].Status != 200 || resps[q].Id != uint64(q) {
			t.Errorf("stream answer %d: %v", q, resps[q])
		}
	}

	_, err = g.produce(t, nil, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{{Key: []byte(keysFor(2, 3, 1)[0]), Value: []byte("alone")}}})
	stop()
	if r := refusalOf(err); r.code != codes.Unavailable || r.detail == nil || r.detail.Status != 503 || r.detail.BadIndex != 0 ||
		!strings.Contains(r.msg, "no record written") {
		t.Errorf("every record refused: %v, want Unavailable, status 503, bad_index 0", r)
	}
}

// TestGRPCDeadline: a client's deadline bounds its request. A broker
// holds the produce request carrying the records past it: the answer,
// before the deadline, is DeadlineExceeded saying they may have been
// written — and they are, once the broker lets go. The next call's record,
// queued behind that request when its deadline passes, gets the same
// answer, and is written after all: Kafka's client keeps it for
// produce_timeout_ms from its arrival, as every record (a record given
// the call's shorter deadline failed the records queued behind it with
// it: TestShortGRPCDeadlineDoesNotFailOtherClientsRecords).
func TestGRPCDeadline(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, nil)
	f := kafkatest.NewFaults(t, c)
	f.Sleep(int16(kmsg.Produce), 1, 5*time.Second)

	// The first call's deadline (3 s) comes after the second call's (1 s
	// after it starts): the second starts once the first's request is
	// held, which takes a while under load.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	first := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := g.kp.Produce(ctx, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", "held")}})
		first <- err
	}()
	// Its produce request held at the broker: the next record queues
	// behind it (one request out per broker), in no request.
	waitFor(t, "the first record's produce request at the broker", func() bool { return f.Injected() == 1 })
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	_, err := g.kp.Produce(ctx2, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", "queued")}})
	r := refusalOf(err)
	if r.code != codes.DeadlineExceeded || r.detail == nil || r.detail.Status != 504 || !strings.Contains(r.msg, "may have been written") ||
		!strings.Contains(r.msg, "the request's deadline") {
		t.Errorf("record queued past the deadline: %v, want DeadlineExceeded, status 504, within the request's deadline", r)
	}
	r = refusalOf(<-first)
	if r.code != codes.DeadlineExceeded || r.detail == nil || r.detail.Status != 504 || !strings.Contains(r.msg, "may have been written") {
		t.Errorf("record held at the broker past the deadline: %v, want DeadlineExceeded, status 504, may have been written", r)
	}
	// The client gives up at its deadline by itself (then no 504 detail,
	// checked above); past it here is the test's goroutines scheduled late.
	if d := time.Since(start); d > 4500*time.Millisecond {
		t.Errorf("answered after %v, past the client's deadline of 3 s", d)
	}
	waitFor(t, "the held and the queued records written", func() bool { return endOffsets(t, c, topic) == 2 })
	// A record after them is written after them.
	if _, err := g.produce(t, nil, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", "after")}}); err != nil {
		t.Fatalf("after: %v", refusalOf(err))
	}
	var values []string
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		values = append(values, string(r.Value))
	}
	if fmt.Sprint(values) != "[held queued after]" {
		t.Errorf("Kafka holds %q, want [held queued after]", values)
	}
	if m := g.metrics(t); !strings.Contains(m, `kproxy_grpc_rpcs_total{code="DeadlineExceeded",method="kafkahttpwrapper.v1.KProxy/Produce"} 2`) {
		t.Errorf("/metrics lacks the DeadlineExceeded call")
	}
}

// TestGRPCTLS: with tls_cert_file and tls_key_file the gRPC port speaks
// TLS only, with the HTTP port's certificate.
func TestGRPCTLS(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	certs := testcert.New(t)
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey },
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: certs.CA})))
	resp, err := g.produce(t, nil, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", "over tls")}})
	if err != nil || resp.Status != 200 {
		t.Fatalf("over TLS: %v %v", resp, refusalOf(err))
	}
	plain, err := grpc.NewClient(g.srv.GRPCAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := kproxypb.NewKProxyClient(plain).Produce(ctx, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", "plain")}}); err == nil {
		t.Errorf("plain text accepted on the TLS port")
	}
	if n := endOffsets(t, c, topic); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}

// TestGRPCHealthAndReflection: the health service says SERVING for the
// server and the KProxy service, NotFound for others, NOT_SERVING when no
// broker answers; a watch sees NOT_SERVING at shutdown and ends.
// Reflection lists the services and describes KProxy (what grpcurl
// needs).
func TestGRPCHealthAndReflection(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := grpc_health_v1.NewHealthClient(g.conn)
	for _, svc := range []string{"", "kafkahttpwrapper.v1.KProxy"} {
		r, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: svc})
		if err != nil || r.Status != grpc_health_v1.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q): %v %v", svc, r, err)
		}
	}
	if _, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("Check(nope): %v, want NotFound", err)
	}

	rc, err := rpb.NewServerReflectionClient(g.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rc.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}})
	lr, err := rc.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range lr.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	for _, want := range []string{"kafkahttpwrapper.v1.KProxy", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("reflection lists %v, not %s", names, want)
		}
	}
	rc.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "kafkahttpwrapper.v1.KProxy"}})
	fr, err := rc.Recv()
	if err != nil || len(fr.GetFileDescriptorResponse().GetFileDescriptorProto()) == 0 ||
		!bytes.Contains(fr.GetFileDescriptorResponse().GetFileDescriptorProto()[0], []byte("ProduceStream")) {
		t.Errorf("reflection does not describe the KProxy service: %v", err)
	}
	rc.CloseSend()
	if _, err := rc.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("reflection stream end: %v", err)
	}

	watch, err := hc.Watch(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", r, err)
	}
	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- g.stop() }()
	if r, err := watch.Recv(); err != nil || r.Status != grpc_health_v1.HealthCheckResponse_NOT_SERVING {
		t.Errorf("watch at shutdown: %v %v, want NOT_SERVING", r, err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown with a health watch open took %v", d)
	}
}

// TestGRPCHealthWithoutKafka: NOT_SERVING when no broker answers.
func TestGRPCHealthWithoutKafka(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ShutdownTimeoutMs = 2000 })
	c.Close()
	hc := grpc_health_v1.NewHealthClient(g.conn)
	waitFor(t, "NOT_SERVING without Kafka", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := hc.Check(ctx, &grpc_health_v1.HealthCheckRequest{})
		return err == nil && r.Status == grpc_health_v1.HealthCheckResponse_NOT_SERVING
	})
}

// TestGRPCShutdown: at shutdown a stream stops taking requests, answers
// those it took — their records written — and ends UNAVAILABLE; unary
// calls in flight are answered; Run returns long before
// shutdown_timeout_ms though a stream stays open; every record answered
// 200 is in Kafka.
func TestGRPCShutdown(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.ShutdownTimeoutMs = 20_000 })
	idle := g.stream(t, nil) // open, one request answered, then silent
	idle.Send(&kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "k", "idle")}})
	if r, err := idle.Recv(); err != nil || r.Status != 200 {
		t.Fatalf("idle stream: %v %v", r, err)
	}
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)
	busy := g.stream(t, nil)
	reqs := keyedRequests(5, 10, 3, func(int) int32 { return 1 })
	for _, r := range reqs {
		busy.Send(r)
	}
	unary := make(chan error, 1)
	go func() {
		_, err := g.produce(t, nil, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "u", "unary")}})
		unary <- err
	}()
	waitFor(t, "the stream's 5 requests and the call in flight", func() bool { return g.srv.InFlight() == 51 })
	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- g.stop() }()
	awaitShutdown(t, g.srv) // shutdown has begun and waits for them
	close(release)
	resps, err := recvAll(busy)
	if status.Code(err) != codes.Unavailable || len(resps) != 5 {
		t.Errorf("busy stream at shutdown: %d answers, end %v; want 5 and Unavailable", len(resps), err)
	}
	for q, r := range resps {
		if r.Id != uint64(q) || r.Status != 200 {
			t.Errorf("answer %d at shutdown: %v", q, r)
		}
	}
	if err := <-unary; err != nil {
		t.Errorf("call in flight at shutdown: %v", refusalOf(err))
	}
	if _, err := idle.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("idle stream at shutdown: %v, want Unavailable", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("shutdown took %v with streams open", d)
	}
	if n := endOffsets(t, c, topic); n != 1+50+1 {
		t.Errorf("%d records in Kafka, want the 52 answered 200", n)
	}
}

// TestGRPCPortTaken: a grpc_port in use stops the start with the file,
// the key and the address.
func TestGRPCPortTaken(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	doc := fmt.Sprintf("port: 0\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\ngrpc_port: %d\nbroker_hosts: [%s]\n", port, c.ListenAddrs()[0])
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := kproxy.LoadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := kproxy.New(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		srv.Close()
		t.Fatal("New with grpc_port taken: no error")
	}
	want := fmt.Sprintf("%s: listen on 127.0.0.1:%d (grpc_port %d): ", f, port, port)
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q, want it to start %q", err, want)
	}
	for _, tc := range []struct{ doc, want string }{
		{"grpc_port: 70000\n", "grpc_port: must be 0..65535 (0: gRPC off), got 70000"},
		{"port: 5030\ngrpc_port: 5030\n", "grpc_port: must differ from port, got 5030"},
	} {
		os.WriteFile(f, []byte(tc.doc+"broker_hosts: [a:1]\n"), 0o644)
		if _, err := kproxy.LoadConfig(f); err == nil || !strings.Contains(err.Error(), f+": "+tc.want) {
			t.Errorf("%q: %v, want %q", tc.doc, err, tc.want)
		}
	}
}

// TestGRPCOff: without grpc_port nothing listens for gRPC.
func TestGRPCOff(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	if a := p.srv.GRPCAddr(); a != nil {
		t.Errorf("grpc_port 0: gRPC listening on %v", a)
	}
}

// TestGRPCRecordSizesMatchBatch: the same records refused alike by /batch
// and by gRPC (a record's size against max_message_bytes counts key,
// value and headers the same way).
func TestGRPCRecordSizesMatchBatch(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) { cfg.MaxMessageBytes = 600 })
	sizes := map[int32]int{}
	for _, size := range []int{400, 490, 494, 495, 496, 497, 510} {
		value := strings.Repeat("x", size)
		a := g.postBatch(t, "topic="+topic, "application/json", jsonBatch([]brec{{key: "key", value: []byte(`"` + value[2:] + `"`),
			headers: [][2]string{{"h", "v"}}}}))
		_, err := g.produce(t, nil, &kproxypb.ProduceRequest{Topic: topic, Records: []*kproxypb.Record{grec("", "key", value, "h", "v")}})
		code := int32(200)
		if r := refusalOf(err); err != nil && r.detail != nil {
			code = r.detail.Status
		} else if err != nil {
			t.Fatalf("value of %d bytes: %v", size, r)
		}
		if int32(a.code) != code {
			t.Errorf("value of %d bytes: /batch %d, gRPC %d", size, a.code, code)
		}
		sizes[code]++
	}
	if sizes[200] == 0 || sizes[413] == 0 {
		t.Errorf("answers by status %v: the sizes do not straddle the limit", sizes)
	}
}

// The proto's field numbers are the wire: a change breaks every client.
func TestGRPCProtoFieldNumbers(t *testing.T) {
	for _, tc := range []struct {
		msg    proto.Message
		fields string
	}{
		{&kproxypb.ProduceRequest{}, "acks=1 atomic=2 topic=3 records=4 id=5 spool=6"},
		{&kproxypb.Record{}, "topic=1 key=2 value=3 headers=4"},
		{&kproxypb.Header{}, "key=1 value=2"},
		{&kproxypb.ProduceResponse{}, "id=1 status=2 error=3 results=4 bad_index=5 retry_after=6"},
		{&kproxypb.RecordResult{}, "partition=1 offset=2 status=3 error=4 spooled=5"},
	} {
		fs := tc.msg.ProtoReflect().Descriptor().Fields()
		var got []string
		for i := range fs.Len() {
			got = append(got, fmt.Sprintf("%s=%d", fs.Get(i).Name(), fs.Get(i).Number()))
		}
		if strings.Join(got, " ") != tc.fields {
			t.Errorf("%T: %s, want %s", tc.msg, strings.Join(got, " "), tc.fields)
		}
	}
}
