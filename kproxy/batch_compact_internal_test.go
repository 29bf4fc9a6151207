package kproxy

import (
	"bytes"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestCompactCopiesOnlyWhatPointsIntoTheBody attacks batchJob.compact: a
// message of 5,000 one-byte records under a 200-byte request-level topic,
// with an ext header shared by every record (in a buffer of kproxy's
// own), padded to 1.5 MiB. Counting the topic and the shared header once
// per record made it about 2 MB of "records": the padding was not let go.
// And a body that is mostly records is left as it is.
func TestCompactCopiesOnlyWhatPointsIntoTheBody(t *testing.T) {
	const n = 5000
	topic := bytes.Repeat([]byte{'t'}, 200)
	body := append([]byte(nil), topic...)
	values := len(body)
	for i := range n {
		body = append(body, byte('a'+i%26))
	}
	body = append(body, make([]byte, 3<<19)...) // the padding
	ext := []kgo.RecordHeader{{Key: "ip", Value: []byte("203.0.113.7")}}
	j := &batchJob{body: body}
	for i := range n {
		j.recs = append(j.recs, batchRecord{topic: body[:200:200], value: body[values+i : values+i+1 : values+i+1], headers: ext, name: "t"})
	}
	// An empty key, value and header value sliced from the body ("" in
	// JSON): empty, not null, and not the body's (they kept it whole).
	empty := body[values : values : values+1]
	j.recs = append(j.recs, batchRecord{key: empty, value: empty, headers: []kgo.RecordHeader{{Key: "h", Value: empty}}, name: "t"})
	j.compact()
	if j.body != nil {
		t.Fatalf("5,000 one-byte records in a 1.5 MiB body: the body was kept")
	}
	old := &batchJob{body: body}
	for i, r := range j.recs[:n] {
		if old.inBody(r.value) || r.topic != nil {
			t.Fatalf("record %d still points into the body (value %v, topic %d bytes)", i, old.inBody(r.value), len(r.topic))
		}
		if r.value[0] != byte('a'+i%26) || &r.headers[0].Value[0] != &ext[0].Value[0] {
			t.Fatalf("record %d: value %q, header value moved: %v", i, r.value, &r.headers[0].Value[0] != &ext[0].Value[0])
		}
	}
	last := j.recs[n]
	for what, b := range map[string][]byte{"key": last.key, "value": last.value, "header value": last.headers[0].Value} {
		if b == nil || len(b) != 0 || old.inBody(b) {
			t.Errorf("an empty %s sliced from the body: nil %v, %d bytes, in the body %v; want empty, not null, not the body's", what, b == nil, len(b), old.inBody(b))
		}
	}

	// Mostly records: left alone.
	body = bytes.Repeat([]byte{'v'}, 100<<10)
	j = &batchJob{body: body, recs: []batchRecord{{value: body[:90<<10], name: "t"}}}
	j.compact()
	if j.body == nil || &j.recs[0].value[0] != &body[0] {
		t.Error("a body that is mostly its record was copied")
	}
}
