package kproxy_test

import (
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestBatchJSONLoneSurrogate: a JSON /batch record's key, header name or
// header value is a JSON string, written as its UTF-8 text. An escaped
// lone surrogate ("\ud800") has none: such a string is refused (400, the
// record's index, nothing written), not written as U+FFFD — which would
// give "\ud800" and "\udbff" one key, a partition and an order they do not
// share, and a record that is not what the client sent. A pair
// ("\ud83d\ude00") is one character and written as its UTF-8.
func TestBatchJSONLoneSurrogate(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, nil)
	for _, rec := range []string{
		`{"key":"\ud800","value":1}`,
		`{"key":"a\udc00b","value":1}`,
		`{"key":"\ud83d\u0041","value":1}`,
		`{"key":"\ud83d","value":1}`,
		`{"value":1,"headers":{"h":"\udbff"}}`,
		`{"value":1,"headers":{"\udfff":"v"}}`,
	} {
		a := p.postBatch(t, "topic="+topic, "application/json", []byte(`[{"value":0},`+rec+`]`))
		if a.code != 400 || a.index() != 1 || !strings.Contains(a.Error, "surrogate") {
			t.Errorf("%s: %v, want 400 for record 1, naming the lone surrogate", rec, a)
		}
	}
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records written, want none", n)
	}
	a := p.postBatch(t, "topic="+topic, "application/json", []byte(`[{"key":"\ud83d\ude00","value":1,"headers":{"\u00e9":"\ud83d\ude00"}}]`))
	if a.code != 200 {
		t.Fatalf("a surrogate pair: %v, want 200", a)
	}
	m := readRecord(t, c, topic, a.Results[0].Partition, *a.Results[0].Offset)
	if string(m.Key) != "😀" || len(m.Headers) != 1 || m.Headers[0].Key != "é" || string(m.Headers[0].Value) != "😀" {
		t.Errorf("a surrogate pair written as key %q, headers %q", m.Key, m.Headers)
	}
}

// TestBatchJSONLoneSurrogateReason: a JSON /batch record whose topic or
// field name holds an escaped lone surrogate is refused (400, its index)
// with a reason that says so, as one whose key does: not "topic must be a
// non-empty string" for a topic that is one, nor "unknown field """ for a
// field whose name is not empty (README: every non-200 answer says why).
func TestBatchJSONLoneSurrogateReason(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, nil)
	for _, rec := range []string{
		`{"topic":"ev\ud800ents","value":1}`,
		`{"ke\udc00y":"k","value":1}`,
	} {
		a := p.postBatch(t, "topic="+topic, "application/json", []byte(`[{"value":0},`+rec+`]`))
		if a.code != 400 || a.index() != 1 || !strings.Contains(a.Error, "surrogate") {
			t.Errorf("%s: %v, want 400 for record 1, naming the lone surrogate", rec, a)
		}
	}
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records written, want none", n)
	}
}
