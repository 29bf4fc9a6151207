package kproxy

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
)

// wireServer is a Server with what readRequest reads.
func wireServer(max int) *Server {
	cfg := DefaultConfig()
	cfg.MaxBatchRecords = max
	return &Server{cfg: cfg}
}

func read(t testing.TB, s *Server, msg []byte) ([]batchRecord, requestHead, *batchError) {
	t.Helper()
	j := &batchJob{body: msg}
	h, e := s.readRequest(j)
	return j.recs, h, e
}

// TestReadRequest: kproxy's reader of ProduceRequests reads what the
// generated code writes — the request's topic for records without one, no
// key for an empty one, empty values (never null), headers — and refuses
// what /batch refuses, with the record's index and the request's id.
func TestReadRequest(t *testing.T) {
	s := wireServer(5)
	m1 := int32(-1)
	req := &kproxypb.ProduceRequest{Acks: &m1, Topic: "t", Id: 7, Records: []*kproxypb.Record{
		{Key: []byte("k"), Value: []byte("v"), Headers: []*kproxypb.Header{{Key: "a", Value: []byte("1")}, {Key: "b"}}},
		{Topic: "other", Value: []byte{0}},
		{},
	}}
	msg, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	recs, h, e := read(t, s, msg)
	if e != nil || h.id != 7 || h.acks != 2 || h.atomic || len(recs) != 3 {
		t.Fatalf("read: %+v %v, %d records", h, e, len(recs))
	}
	want := []struct{ topic, key, value, headers string }{{"t", "k", "v", "a=1 b="}, {"other", "", "\x00", ""}, {"t", "", "", ""}}
	for i, w := range want {
		r := recs[i]
		var hs []string
		for _, h := range r.headers {
			hs = append(hs, h.Key+"="+string(h.Value))
			if h.Value == nil {
				t.Errorf("record %d header %s: nil value", i, h.Key)
			}
		}
		if string(r.topic) != w.topic || string(r.key) != w.key || (w.key == "") != (r.key == nil) ||
			string(r.value) != w.value || r.value == nil || strings.Join(hs, " ") != w.headers {
			t.Errorf("record %d: topic %q key %q value %q headers %v, want %+v", i, r.topic, r.key, r.value, hs, w)
		}
		if len(r.value) > 0 && !within(msg, r.value) {
			t.Errorf("record %d: the value is not a slice of the message", i)
		}
	}
	if m, _ := proto.Marshal(&kproxypb.ProduceRequest{Topic: "t", Records: []*kproxypb.Record{{}}}); true {
		if _, h, e := read(t, s, m); e != nil || h.acks != 1 {
			t.Errorf("acks absent: %+v %v, want acks=1", h, e)
		}
	}
	zero := int32(0)
	if m, _ := proto.Marshal(&kproxypb.ProduceRequest{Acks: &zero, Topic: "t", Records: []*kproxypb.Record{{}}}); true {
		if _, h, e := read(t, s, m); e != nil || h.acks != 0 {
			t.Errorf("acks 0: %+v %v", h, e)
		}
	}

	for _, tc := range []struct {
		name  string
		req   *kproxypb.ProduceRequest
		raw   []byte
		code  int
		index int
		why   string
	}{
		{"bad acks", &kproxypb.ProduceRequest{Acks: new(int32(2)), Id: 9, Records: []*kproxypb.Record{{}}}, nil, 400, -1, "acks must be 0, 1 or -1, got 2"},
		{"atomic at acks 1", &kproxypb.ProduceRequest{Atomic: true, Records: []*kproxypb.Record{{}}}, nil, 400, -1, "atomic needs acks -1"},
		{"atomic off", &kproxypb.ProduceRequest{Atomic: true, Acks: &m1, Records: []*kproxypb.Record{{}}}, nil, 400, -1, "atomic batches are off"},
		{"no records", &kproxypb.ProduceRequest{Topic: "t", Id: 9}, nil, 400, -1, "no records"},
		{"bad topic", &kproxypb.ProduceRequest{Topic: "t t", Records: []*kproxypb.Record{{}}}, nil, 400, -1, "topic name"},
		{"too many", &kproxypb.ProduceRequest{Id: 9, Records: make([]*kproxypb.Record, 6)}, nil, 413, 5, "more than max_batch_records (5)"},
		{"empty header name", &kproxypb.ProduceRequest{Id: 9, Records: []*kproxypb.Record{{}, {Headers: []*kproxypb.Header{{Value: []byte("x")}}}}}, nil, 400, 1, "a header name is empty"},
		{"header twice", &kproxypb.ProduceRequest{Id: 9, Records: []*kproxypb.Record{{Headers: []*kproxypb.Header{{Key: "a"}, {Key: "a"}}}}}, nil, 400, 0, `header "a" given twice`},
		{"65 headers", &kproxypb.ProduceRequest{Id: 9, Records: []*kproxypb.Record{{Headers: manyHeaders(65)}}}, nil, 400, 0, "more than 64 headers"},
		{"truncated", nil, msg[:len(msg)-3], 400, -1, "not a ProduceRequest"},
		{"header name not UTF-8", nil, []byte{0x22, 6, 0x22, 4, 0x0a, 2, 0xff, 0xfe, 0x28, 9}, 400, 0, "a header name is not UTF-8"},
	} {
		m := tc.raw
		if m == nil {
			for i := range tc.req.Records {
				if tc.req.Records[i] == nil {
					tc.req.Records[i] = &kproxypb.Record{}
				}
			}
			m, _ = proto.Marshal(tc.req)
		}
		_, h, e := read(t, s, m)
		if e == nil || e.status != tc.code || e.index != tc.index || !strings.Contains(e.reason, tc.why) {
			t.Errorf("%s: %+v, want %d index %d %q", tc.name, e, tc.code, tc.index, tc.why)
		}
		if tc.req != nil && h.id != tc.req.Id || tc.raw != nil && tc.name == "header name not UTF-8" && h.id != 9 {
			t.Errorf("%s: id %d", tc.name, h.id)
		}
	}
}

func manyHeaders(n int) []*kproxypb.Header {
	var hs []*kproxypb.Header
	for i := range n {
		hs = append(hs, &kproxypb.Header{Key: "h" + string(rune('a'+i%26)) + string(rune('a'+i/26))})
	}
	return hs
}

// TestAnswerEncoding: an answer appended by kproxy is the bytes the
// generated code writes for the same ProduceResponse.
func TestAnswerEncoding(t *testing.T) {
	for _, a := range []answer{
		{id: 3, status: 200, index: -1, results: []recordResult{{status: 200, partition: 2, offset: 17}, {status: 200, partition: 0, offset: 0}}},
		{status: 200, index: -1, results: []recordResult{{status: 200, partition: -1, offset: -1}}},
		{id: 1 << 40, status: 207, index: 1, reason: "1 of 2 records not written (see each result)", results: []recordResult{
			{status: 200, partition: 1, offset: 1 << 35}, {status: 504, partition: -1, offset: -1, reason: "no answer; é"}}},
		{id: 9, status: 429, index: 5, reason: "rate limit", retryAfter: 3},
		{status: 400, index: -1, reason: strings.Repeat("x", 300)},
		// Results of 127 and 128 bytes (the length's second byte), one
		// of 20,000, and one spooled.
		{status: 207, index: 0, reason: "r", results: []recordResult{
			{status: 503, partition: -1, offset: -1, reason: strings.Repeat("a", 127-27)},
			{status: 503, partition: -1, offset: -1, reason: strings.Repeat("b", 128-27)},
			{status: 504, partition: 3, offset: 1 << 50, reason: strings.Repeat("c", 20_000)},
			{status: 202, partition: -1, offset: -1}, {status: 200, partition: 1, offset: 5}}},
	} {
		want := &kproxypb.ProduceResponse{Id: a.id, Status: int32(a.status), Error: a.reason, BadIndex: int32(a.index), RetryAfter: int32(a.retryAfter)}
		for _, r := range a.results {
			rr := &kproxypb.RecordResult{Partition: r.partition, Offset: r.offset, Status: int32(r.status)}
			if r.status != 200 {
				rr.Error = r.reason
			}
			rr.Spooled = r.status == 202
			want.Results = append(want.Results, rr)
		}
		wb, err := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got := a.appendTo(nil)
		if !bytes.Equal(got, wb) {
			var back kproxypb.ProduceResponse
			err := proto.Unmarshal(got, &back)
			t.Errorf("answer %+v:\nkproxy    % x\ngenerated % x\n(read back: %v %v)", a, got, wb, &back, err)
		}
	}
}

// FuzzReadRequest: whatever kproxy's reader accepts, the generated code
// reads too, to the same records.
func FuzzReadRequest(f *testing.F) {
	m1 := int32(-1)
	for _, req := range []*kproxypb.ProduceRequest{
		{Topic: "t", Id: 1, Records: []*kproxypb.Record{{Key: []byte("k"), Value: []byte("v"), Headers: []*kproxypb.Header{{Key: "a", Value: []byte("b")}}}}},
		{Acks: &m1, Records: []*kproxypb.Record{{Topic: "x"}, {Topic: "y", Value: []byte{1, 2}}}},
	} {
		b, _ := proto.Marshal(req)
		f.Add(b)
	}
	s := wireServer(100)
	f.Fuzz(func(t *testing.T, msg []byte) {
		recs, h, e := read(t, s, append([]byte(nil), msg...))
		if e != nil {
			return
		}
		var req kproxypb.ProduceRequest
		if err := proto.Unmarshal(msg, &req); err != nil {
			t.Fatalf("kproxy read % x, protobuf refuses it: %v", msg, err)
		}
		if h.id != req.Id || len(recs) != len(req.Records) {
			t.Fatalf("id %d, %d records; protobuf: %d, %d", h.id, len(recs), req.Id, len(req.Records))
		}
		for i, r := range req.Records {
			topic := r.Topic
			if topic == "" {
				topic = req.Topic
			}
			k := recs[i]
			if string(k.topic) != topic || !bytes.Equal(k.key, r.Key) || !bytes.Equal(k.value, r.Value) || len(k.headers) != len(r.Headers) {
				t.Fatalf("record %d: kproxy %q %q %q %d headers, protobuf %q %q %q %d", i, k.topic, k.key, k.value, len(k.headers), topic, r.Key, r.Value, len(r.Headers))
			}
			for j, hd := range r.Headers {
				if k.headers[j].Key != hd.Key || !bytes.Equal(k.headers[j].Value, hd.Value) {
					t.Fatalf("record %d header %d: %v, protobuf %v", i, j, k.headers[j], hd)
				}
			}
		}
	})
}

// BenchmarkReadRequest: reading a request of 100 records of 200 bytes,
// and appending its answer.
func BenchmarkReadRequest(b *testing.B) {
	req := &kproxypb.ProduceRequest{Topic: "t"}
	value := bytes.Repeat([]byte("x"), 200)
	for i := range 100 {
		req.Records = append(req.Records, &kproxypb.Record{Key: []byte("user" + string(rune('0'+i%10))), Value: value})
	}
	msg, _ := proto.Marshal(req)
	s := wireServer(10_000)
	j := &batchJob{}
	res := make([]recordResult, 100)
	for i := range res {
		res[i] = recordResult{status: 200, partition: int32(i % 4), offset: 1_000_000 + int64(i)}
	}
	a := answer{status: 200, index: -1, results: res}
	var out []byte
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		j.body = append(j.body[:0], msg...)
		if _, e := s.readRequest(j); e != nil {
			b.Fatal(e)
		}
		out = a.appendTo(out[:0])
	}
}
