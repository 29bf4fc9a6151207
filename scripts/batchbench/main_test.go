package main

import (
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestBodiesAndRecordsAgree: a value is exactly -size bytes, and a batch
// body carries the same keys and values the kgo mode writes.
func TestBodiesAndRecordsAgree(t *testing.T) {
	for _, size := range []int{37, 60, 200, 1000, 70000} {
		v, err := valueOf(size)
		if err != nil || len(v) != size {
			t.Fatalf("valueOf(%d): %d bytes, %v", size, len(v), err)
		}
	}
	v, _ := valueOf(200)
	kl := keyList(10_000)
	from := first(3, 5, 100, 10_000)
	var recs []struct {
		Key   string             `msgpack:"key"`
		Value msgpack.RawMessage `msgpack:"value"`
	}
	if err := msgpack.Unmarshal(batchBody(nil, kl, from, 100, v), &recs); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 100 {
		t.Fatalf("%d records", len(recs))
	}
	for i, r := range recs {
		if r.Key != string(kl[(from+i)%len(kl)]) || string(r.Value) != string(v) {
			t.Fatalf("record %d: key %q value % x", i, r.Key, r.Value[:8])
		}
	}
}
