package kproxy

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidMsgpackAcceptsEveryType(t *testing.T) {
	values := []any{
		nil, true, false, 0, 1, 127, 128, 255, 256, 65536, math.MaxUint32 + 1, -1, -32, -33, -129, -40000,
		math.MinInt64, float32(1.5), 2.25, "", "short", string(bytes.Repeat([]byte("x"), 40)),
		string(bytes.Repeat([]byte("y"), 300)), string(bytes.Repeat([]byte("z"), 70000)),
		[]byte{}, []byte("bin"), bytes.Repeat([]byte{1}, 300), bytes.Repeat([]byte{2}, 70000),
		[]any{}, []any{1, "a", nil}, make([]int, 20), make([]int, 70000),
		map[string]any{}, map[string]any{"method": "TestUserName", "uid": 42},
		map[string]any{"nested": map[string]any{"deep": []any{map[string]any{"x": 1.5}}}},
		time.Unix(1700000000, 5).UTC(), // ext type -1
	}
	big := map[string]int{}
	for i := range 20 {
		big[string(rune('a'+i))] = i
	}
	values = append(values, big)
	for _, v := range values {
		b := mustMarshal(t, v)
		if err := validMsgpack(b); err != nil {
			t.Errorf("%T %.40v: encoded % x…: %v", v, v, b[:min(len(b), 8)], err)
		}
	}
}

func TestValidMsgpackRejects(t *testing.T) {
	cases := map[string][]byte{
		"empty":                 {},
		"never used 0xc1":       {0xc1},
		"truncated str":         {0xa5, 'a', 'b'},
		"truncated str8 len":    {0xd9},
		"truncated uint32":      {0xce, 0, 0},
		"truncated map":         {0x82, 0x01, 0x02, 0x03},
		"array claims too many": {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},
		"map32 claims too many": {0xdf, 0x7f, 0xff, 0xff, 0xff},
		"bin32 claims too many": {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00},
		"ext8 missing type":     {0xc7, 0x01},
		"fixext16 short":        {0xd8, 0x01, 0x02},
		"two values":            {0x01, 0x02},
		"trailing garbage":      append(mustMarshal(t, map[string]any{"a": 1}), 0xff),
		"text":                  []byte(`{"json":true}`), // '{' is fixmap of 11 pairs: truncated
	}
	for name, b := range cases {
		if err := validMsgpack(b); err == nil {
			t.Errorf("%s: % x accepted", name, b)
		}
	}
}

func TestValidMsgpackDeepNesting(t *testing.T) {
	// 1,000,000 nested one-element arrays, then a nil: valid, and must not
	// recurse.
	b := append(bytes.Repeat([]byte{0x91}, 1_000_000), 0xc0)
	if err := validMsgpack(b); err != nil {
		t.Fatal(err)
	}
	if err := validMsgpack(b[:len(b)-1]); err == nil {
		t.Fatal("missing innermost value accepted")
	}
}

func FuzzValidMsgpack(f *testing.F) {
	f.Add([]byte{0x81, 0xa1, 'a', 0x01})
	f.Add([]byte{0xdd, 0, 0, 0, 2, 0xc0, 0xc3})
	f.Add([]byte{0xc7, 0x02, 0x05, 0xaa, 0xbb})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := validMsgpack(b)
		// Whatever the validator accepts, the reference decoder must read
		// as exactly one value using every byte.
		if err != nil {
			return
		}
		dec := msgpack.NewDecoder(bytes.NewReader(b))
		if err := dec.Skip(); err != nil {
			t.Fatalf("validator accepted % x, decoder: %v", b, err)
		}
		if dec.Buffered().(*bytes.Reader).Len() != 0 {
			t.Fatalf("validator accepted % x with bytes left over", b)
		}
	})
}
