package kproxy

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/jsonscan"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/msgpackscan"
)

// checkParsed holds for any batch a parser accepts: at least one record
// and at most max, each with a value that is one whole value of the
// format, lying inside the body, at most 64 headers with distinct
// non-empty names.
func checkParsed(t *testing.T, body []byte, recs []batchRecord, max int, valid func([]byte) error) {
	t.Helper()
	if len(recs) == 0 || len(recs) > max {
		t.Fatalf("%d records accepted (max %d)", len(recs), max)
	}
	for i, r := range recs {
		if err := valid(r.value); err != nil {
			t.Fatalf("record %d: value % x: %v", i, r.value, err)
		}
		if !within(body, r.value) {
			t.Fatalf("record %d: value is not a slice of the body", i)
		}
		if len(r.headers) > maxRecordHeaders {
			t.Fatalf("record %d: %d headers", i, len(r.headers))
		}
		names := map[string]bool{}
		for _, h := range r.headers {
			if h.Key == "" || names[h.Key] {
				t.Fatalf("record %d: header name %q empty or repeated", i, h.Key)
			}
			names[h.Key] = true
		}
	}
}

func within(body, s []byte) bool {
	if len(s) == 0 {
		return false
	}
	for i := range body {
		if &body[i] == &s[0] {
			return i+len(s) <= len(body)
		}
	}
	return false
}

func FuzzParseMsgpackBatch(f *testing.F) {
	seed, _ := msgpack.Marshal([]any{
		map[string]any{"topic": "t", "key": "k", "value": map[string]any{"a": []any{1, 2}}, "headers": map[string]string{"h": "v"}},
		map[string]any{"value": nil, "key": nil},
	})
	f.Add(seed)
	f.Add([]byte{0x91, 0x81, 0xa5, 'v', 'a', 'l', 'u', 'e', 0xc0})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := parseMsgpackBatch(nil, b, []byte("t"), 100)
		if err != nil {
			if err.status != 400 && err.status != 413 || err.index >= len(recs) {
				t.Fatalf("refusal %+v after %d records", err, len(recs))
			}
			return
		}
		checkParsed(t, b, recs, 100, msgpackscan.Valid)
	})
}

func FuzzParseJSONBatch(f *testing.F) {
	f.Add([]byte(`[{"topic":"t","key":"k","value":{"a":[1,2]},"headers":{"h":"v"}},{"value":null,"key":null}]`))
	f.Add([]byte(`[{"value":"\u00e9","headers":{"a\u0000":"b"}}]`))
	f.Add([]byte(`[{"value":1,"value":2}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := parseJSONBatch(nil, b, []byte("t"), 100)
		if err != nil {
			// An element that is not JSON is named by its index before a
			// record is made of it: index len(recs) at most.
			if err.status != 400 && err.status != 413 || err.index > len(recs) {
				t.Fatalf("refusal %+v after %d records", err, len(recs))
			}
			return
		}
		if jsonscan.Valid(b) != nil {
			t.Fatalf("accepted a body that is not JSON: %q", b)
		}
		checkParsed(t, b, recs, 100, jsonscan.Valid)
	})
}

// benchBatch is 100 records of a 200-byte value with a key, as the
// benchmark of scripts/bench-batch.sh sends them.
func benchBatch(b *testing.B, format string) []byte {
	value := "\x83\xa6method\xacTestUserName\xa3uid\xcd\x30\x39\xa7payload\xd9\xa2" + strings.Repeat("x", 162)
	if format == "json" {
		value = `{"method":"TestUserName","uid":12345,"payload":"` + strings.Repeat("x", 152) + `"}`
	}
	var buf bytes.Buffer
	if format == "json" {
		buf.WriteString("[")
		for i := range 100 {
			if i > 0 {
				buf.WriteString(",")
			}
			fmt.Fprintf(&buf, `{"key":"user%d","value":%s}`, i, value)
		}
		buf.WriteString("]")
		return buf.Bytes()
	}
	recs := make([]any, 100)
	for i := range recs {
		recs[i] = map[string]any{"key": fmt.Sprintf("user%d", i), "value": msgpack.RawMessage(value)}
	}
	out, err := msgpack.Marshal(recs)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

func BenchmarkParseBatch(b *testing.B) {
	for _, format := range []string{"msgpack", "json"} {
		b.Run(format, func(b *testing.B) {
			body := benchBatch(b, format)
			parse := parseMsgpackBatch
			if format == "json" {
				parse = parseJSONBatch
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			var recs []batchRecord
			for b.Loop() {
				var err *batchError
				if recs, err = parse(recs, body, []byte("t"), 10_000); err != nil {
					b.Fatal(err.reason)
				}
			}
		})
	}
}

// TestJSONBatchOverMaxBeforeBadRecord: a batch over max_batch_records is
// refused 413 as such, whatever its record past the maximum holds.
func TestJSONBatchOverMaxBeforeBadRecord(t *testing.T) {
	_, err := parseJSONBatch(nil, []byte(`[{"value":1},x]`), []byte("t"), 1)
	if err == nil || err.status != 413 || err.index != 1 {
		t.Fatalf("a batch of more than 1 record, the second not JSON, with max_batch_records 1: %+v; want 413 at index 1", err)
	}
}
