package kproxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// What planHeaders counts for the headers is exactly what they add to a
// record in Kafka's format (kmsg encodes it as kgo sends it).
func TestHeaderSizeIsKafkaFormat(t *testing.T) {
	for _, tc := range []struct{ count, key, value int }{
		{1, 1, 0}, {1, 3, 63}, {1, 3, 64}, {2, 63, 8191}, {1, 64, 8192}, {3, 10, 1 << 20},
		{63, 4, 4}, {64, 4, 4}, {68, 4, 4}, {65, 200, 70_000},
	} {
		r := kmsg.Record{Value: []byte("v")}
		base := len(r.AppendTo(nil))
		var hp headerPlan
		for range tc.count {
			r.Headers = append(r.Headers, kmsg.Header{Key: strings.Repeat("k", tc.key), Value: make([]byte, tc.value)})
			hp.add(tc.key, tc.value)
		}
		hp.size += varintLen(hp.count) - 1 // as planHeaders does
		if got := len(r.AppendTo(nil)) - base; got != hp.size {
			t.Errorf("%d headers of %d+%d bytes add %d bytes to a record, counted %d", tc.count, tc.key, tc.value, got, hp.size)
		}
	}
}

func TestRightmostUntrusted(t *testing.T) {
	trusted := []netip.Prefix{mustPrefix(t, "127.0.0.1"), mustPrefix(t, "10.0.0.0/8"), mustPrefix(t, "2001:db8:ffff::/48")}
	local, proxy := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.0.0.1")
	outside := netip.MustParseAddr("192.0.2.1")
	for _, tc := range []struct {
		peer netip.Addr
		xff  []string
		want string
	}{
		{outside, []string{"203.0.113.9"}, "192.0.2.1"}, // an untrusted peer's header is not believed
		{local, nil, "127.0.0.1"},
		{local, []string{"203.0.113.9"}, "203.0.113.9"},
		{local, []string{"198.51.100.7, 203.0.113.9, 10.0.0.1"}, "203.0.113.9"},
		{proxy, []string{"198.51.100.7,203.0.113.9,10.0.0.2 , 10.0.0.1"}, "203.0.113.9"},
		{local, []string{"198.51.100.7", "203.0.113.9, 10.1.1.1"}, "203.0.113.9"}, // two headers, one list
		{local, []string{"198.51.100.7, 10.0.0.9", "10.1.1.1"}, "198.51.100.7"},
		{local, []string{"10.0.0.2, 10.0.0.1"}, "10.0.0.2"}, // all trusted: the left-most
		{local, []string{"garbage, 10.0.0.1"}, "10.0.0.1"},  // not an address: the hop that passed it
		{local, []string{"203.0.113.9, garbage"}, "127.0.0.1"},
		{local, []string{"unknown"}, "127.0.0.1"},
		{local, []string{"203.0.113.9:5678"}, "203.0.113.9"},
		{local, []string{"[2001:db8::1]:80"}, "2001:db8::1"},
		{local, []string{"2001:db8::1, 2001:db8:ffff::7"}, "2001:db8::1"},
		{local, []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{local, []string{"fe80::1%eth0"}, "fe80::1"},
		{local, []string{", ,203.0.113.9,,"}, "203.0.113.9"},
		{local, []string{""}, "127.0.0.1"},
		{local, []string{"\t198.51.100.7\t,\t203.0.113.9 \t"}, "203.0.113.9"},
		{local, []string{"10.0.0.2 ,, ", " "}, "10.0.0.2"},
	} {
		var xff [][]byte
		for _, h := range tc.xff {
			xff = append(xff, []byte(h))
		}
		if got := rightmostUntrusted(tc.peer, xff, trusted); got.String() != tc.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
		// gRPC's x-forwarded-for metadata: strings, the same rule.
		if got := rightmostUntrusted(tc.peer, tc.xff, trusted); got.String() != tc.want {
			t.Errorf("peer %s, x-forwarded-for metadata %q: %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
	if got := rightmostUntrusted(local, [][]byte{[]byte("203.0.113.9")}, nil); got != local {
		t.Errorf("no trusted proxies: X-Forwarded-For believed (%s)", got)
	}
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := parsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3": "10.1.2.3/32", "10.1.2.3/8": "10.0.0.0/8", "::1": "::1/128", "2001:db8::/32": "2001:db8::/32",
		"::ffff:10.0.0.0/104": "10.0.0.0/8", "::ffff:10.1.1.1": "10.1.1.1/32",
	} {
		if got, err := parsePrefix(in); err != nil || got.String() != want {
			t.Errorf("%s: %v %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "host", "10.0.0", "10.0.0.0/"} {
		if _, err := parsePrefix(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// requestCtx is a request as fasthttp's server parses it.
func requestCtx(t testing.TB, raw string) *fasthttp.RequestCtx {
	t.Helper()
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}, nil)
	return &ctx
}

func BenchmarkRecordHeaders(b *testing.B) {
	s := &Server{}
	ctx := requestCtx(b, "POST /commit?topic=bench HTTP/1.1\r\nHost: kproxy\r\nContent-Type: application/msgpack\r\n"+
		"X-Kafka-Header-Trace-Id: 4bf92f3577b34da6a3ce929d0e0e4736\r\nX-Kafka-Header-Tenant: acme\r\nX-Kafka-Header-Source: bench\r\n"+
		"Content-Length: 1\r\n\r\n\x01")
	var p pending
	b.ReportAllocs()
	for b.Loop() {
		hp, reason := s.planHeaders(ctx)
		if reason != "" || hp.kafka != 3 {
			b.Fatal(reason, hp.kafka)
		}
		p.headers, p.hbuf = s.appendHeaders(p.headers[:0], p.hbuf, ctx, &hp)
	}
	if len(p.headers) != 3 || !bytes.Equal(p.headers[1].Value, []byte("acme")) || p.headers[1].Key != "tenant" {
		b.Fatalf("headers %v", p.headers)
	}
}

func BenchmarkNewUUID(b *testing.B) {
	var buf [36]byte
	b.ReportAllocs()
	for b.Loop() {
		newUUID(&buf)
	}
}

func TestKafkaHeaderName(t *testing.T) {
	for key, want := range map[string]string{
		"X-Kafka-Header-Trace-Id": "Trace-Id", "x-kafka-header-a": "a", "X-KAFKA-HEADER-": "", "X-Kafka-Header-X-Kafka-Header-b": "X-Kafka-Header-b",
		"X-Kafka-Header": "-", "X-Kafka-Headers-a": "-", "X_Kafka-Header-a": "-", "Y-Kafka-Header-a": "-", "x-kafka-header\x00a": "-",
		"x\rkafka-header-a": "-", "X-Kafka\rHeader-a": "-", // CR + 0x20 is '-': only letters fold
	} {
		name, ok := kafkaHeaderName([]byte(key))
		if got := map[bool]string{true: string(name), false: "-"}[ok]; got != want {
			t.Errorf("%q: %q, want %q", key, got, want)
		}
	}
}

// Names are lower-cased and interned up to maxInternedNames; a client
// making up names cannot grow the table past it.
func TestHeaderNamesBounded(t *testing.T) {
	var hn headerNames
	if got := hn.lower([]byte("Trace-ID")); got != "trace-id" {
		t.Fatalf("lower(Trace-ID) = %q", got)
	}
	if allocs := testing.AllocsPerRun(100, func() { hn.lower([]byte("TRACE-id")) }); allocs != 0 {
		t.Errorf("a known name allocates %v times", allocs)
	}
	for i := range 1000 {
		name := fmt.Sprintf("Made-Up-%d", i)
		if got := hn.lower([]byte(name)); got != strings.ToLower(name) {
			t.Fatalf("lower(%s) = %q", name, got)
		}
	}
	if n := len(*hn.names.Load()); n != maxInternedNames {
		t.Errorf("%d names kept, want at most %d", n, maxInternedNames)
	}
	long := strings.Repeat("N", maxInternedLen+1)
	if got := hn.lower([]byte(long)); got != strings.ToLower(long) {
		t.Errorf("a long name lower-cased as %q", got)
	}
}

// TestGRPCExtFieldsAllocs: a gRPC call's ext fields cost nothing with
// ext_headers off (and no x-request-id); with all four on, one allocation
// per metadata value read, the values' buffer and the headers, once per
// call (a stream's requests share them); a record takes them without
// allocating once its job's memory has room, as a /batch record does.
func TestGRPCExtFieldsAllocs(t *testing.T) {
	md := metadata.Pairs("x-request-id", "r-1", "user-agent", "tester/1.0 grpc-go/1.85.0",
		"cookie", "a=1", "cookie", " b=2 ", "x-forwarded-for", "198.51.100.7, 203.0.113.9", "authorization", "Basic eDp5")
	ctx := peer.NewContext(metadata.NewIncomingContext(context.Background(), md),
		&peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 40000}})

	off := &Server{ext: newExtFields(DefaultConfig())}
	bare := peer.NewContext(metadata.NewIncomingContext(context.Background(), metadata.Pairs("user-agent", "grpc-go/1.85.0")),
		&peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 40000}})
	if n := testing.AllocsPerRun(100, func() { off.callExt(bare) }); n != 0 {
		t.Errorf("ext_headers off, no x-request-id: %v allocations a call, want 0", n)
	}

	cfg := DefaultConfig()
	cfg.ExtHeaders, cfg.TrustedProxies = []string{"ip", "ua", "rid", "ck"}, []string{"127.0.0.1"}
	s := &Server{ext: newExtFields(cfg)}
	x := s.callExt(ctx)
	var got []string
	for _, h := range x.headers {
		got = append(got, h.Key+"="+string(h.Value))
	}
	want := []string{"ip=203.0.113.9", "ua=tester/1.0 grpc-go/1.85.0", "rid=r-1", "ck=a=1; b=2"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || x.rid != "r-1" {
		t.Errorf("ext fields %q rid %q, want %q rid r-1", got, x.rid, want)
	}
	// x-request-id, user-agent, cookie, x-forwarded-for (each read copies
	// its values), the buffer, the headers.
	if n := testing.AllocsPerRun(100, func() { s.callExt(ctx) }); n > 6 {
		t.Errorf("all four ext fields: %v allocations a call, want at most 6", n)
	}

	recs := make([]batchRecord, 100)
	for i := range recs {
		recs[i].headers = make([]kgo.RecordHeader, 1, 8)
	}
	if n := testing.AllocsPerRun(100, func() {
		for i := range recs {
			recs[i].headers = recs[i].headers[:1]
		}
		withExtFields(recs, x.headers)
	}); n != 0 {
		t.Errorf("a request of 100 records: %v allocations to add the ext fields, want 0", n)
	}
}
