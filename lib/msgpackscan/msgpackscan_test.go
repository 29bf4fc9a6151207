package msgpackscan

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// mustMarshal encodes v with map keys sorted, so that a map encodes to the
// same bytes every time (tests compare encodings).
func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestValidAcceptsEveryType(t *testing.T) {
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
		if err := Valid(b); err != nil {
			t.Errorf("%T %.40v: encoded % x…: %v", v, v, b[:min(len(b), 8)], err)
		}
	}
}

func TestValidRejects(t *testing.T) {
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
		if err := Valid(b); err == nil {
			t.Errorf("%s: % x accepted", name, b)
		}
	}
}

func TestValidDeepNesting(t *testing.T) {
	// 1,000,000 nested one-element arrays, then a nil: valid, and must not
	// recurse.
	b := append(bytes.Repeat([]byte{0x91}, 1_000_000), 0xc0)
	if err := Valid(b); err != nil {
		t.Fatal(err)
	}
	if err := Valid(b[:len(b)-1]); err == nil {
		t.Fatal("missing innermost value accepted")
	}
}

func FuzzValid(f *testing.F) {
	f.Add([]byte{0x81, 0xa1, 'a', 0x01})
	f.Add([]byte{0xdd, 0, 0, 0, 2, 0xc0, 0xc3})
	f.Add([]byte{0xc7, 0x02, 0x05, 0xaa, 0xbb})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Valid(b)
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

func TestMapString(t *testing.T) {
	for _, tc := range []struct {
		v    []byte
		want string
		err  error
	}{
		{mustMarshal(t, map[string]any{"method": "Login", "uid": 3}), "Login", nil},
		{mustMarshal(t, map[string]any{"a": []any{1, map[string]any{"method": "inner"}}, "method": "Outer"}), "Outer", nil},
		{mustMarshal(t, map[any]any{7: "x", "method": "Num"}), "Num", nil},
		{mustMarshal(t, map[string]any{"method": string(bytes.Repeat([]byte("m"), 300))}), string(bytes.Repeat([]byte("m"), 300)), nil},
		{mustMarshal(t, map[string]any{"uid": 3}), "", ErrNoString},
		{mustMarshal(t, map[string]any{"method": 42}), "", ErrNoString},
		{mustMarshal(t, []any{"method", "Login"}), "", ErrNotMap},
		{mustMarshal(t, "method"), "", ErrNotMap},
		{[]byte{0x81, 0xa6}, "", ErrNotMap},
		{[]byte{0x81, 0xa6, 'm', 'e', 't', 'h', 'o', 'd', 0xdb, 0xff, 0xff, 0xff, 0xff}, "", ErrNoString}, // a 4 GB string claimed
		{[]byte{0xdf, 0xff, 0xff, 0xff, 0xff}, "", ErrNotMap},
		{nil, "", ErrNotMap},
	} {
		got, err := MapString(tc.v, "method")
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("MapString(% x) = %q %v, want %q %v", tc.v[:min(len(tc.v), 16)], got, err, tc.want, tc.err)
		}
	}
}

func FuzzMapString(f *testing.F) {
	f.Add([]byte{0x81, 0xa6, 'm', 'e', 't', 'h', 'o', 'd', 0xa1, 'x'})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x82, 0x07, 0xc6, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := MapString(b, "method")
		if err != nil {
			return
		}
		// What it finds, the reference decoder finds too (on well-formed
		// input only: the reference trusts lengths and allocates them).
		var m map[string]any
		if Valid(b) == nil && msgpack.Unmarshal(b, &m) == nil {
			if v, ok := m["method"].(string); ok && v != got {
				t.Fatalf("% x: %q, decoder %q", b, got, v)
			}
		}
	})
}

func TestArrayAndMap(t *testing.T) {
	recs := []any{
		map[string]any{"topic": "t", "value": map[string]any{"x": []any{1, 2}}},
		7, "s", []any{},
	}
	b := mustMarshal(t, recs)
	var elems [][]byte
	if err := Array(b, func(e []byte) error { elems = append(elems, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(elems) != len(recs) {
		t.Fatalf("%d elements, want %d", len(elems), len(recs))
	}
	for i, r := range recs {
		if want := mustMarshal(t, r); !bytes.Equal(elems[i], want) {
			t.Errorf("element %d: % x, want % x", i, elems[i], want)
		}
	}
	got := map[string][]byte{}
	if err := Map(elems[0], func(k, v []byte) error {
		ks, ok := Bytes(k)
		if !ok {
			t.Fatalf("key % x not a string", k)
		}
		got[string(ks)] = v
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got["value"], mustMarshal(t, map[string]any{"x": []any{1, 2}})) || !bytes.Equal(got["topic"], mustMarshal(t, "t")) {
		t.Errorf("members %v", got)
	}
	stop := errors.New("stop")
	n := 0
	claimsMore := []byte{0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x02}
	if err := Array(claimsMore, func([]byte) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("stop: %v after %d elements", err, n)
	}
	n = 0
	if err := Array(claimsMore, func([]byte) error { n++; return nil }); err == nil || n != 2 {
		t.Fatalf("array claiming 2^31 elements with 2 present: %v after %d", err, n)
	}
	for name, bad := range map[string][]byte{
		"map":              mustMarshal(t, map[string]any{}),
		"int":              {0x01},
		"trailing":         {0x91, 0x01, 0x02},
		"truncated header": {0xdc, 0x00},
		"empty":            {},
	} {
		if err := Array(bad, func([]byte) error { return nil }); err == nil {
			t.Errorf("Array(%s) accepted", name)
		}
	}
	for name, bad := range map[string][]byte{
		"array":     {0x90},
		"trailing":  {0x80, 0x01},
		"no value":  {0x81, 0xa1, 'a'},
		"truncated": {0xde, 0x00},
	} {
		if err := Map(bad, func(_, _ []byte) error { return nil }); err == nil {
			t.Errorf("Map(%s) accepted", name)
		}
	}
}

func TestBytes(t *testing.T) {
	for _, s := range []string{"", "a", string(bytes.Repeat([]byte("x"), 40)), string(bytes.Repeat([]byte("y"), 300)), string(bytes.Repeat([]byte("z"), 70000))} {
		for _, v := range []any{s, []byte(s)} {
			got, ok := Bytes(mustMarshal(t, v))
			if !ok || string(got) != s {
				t.Errorf("Bytes(%T of %d bytes) = %d bytes, %v", v, len(s), len(got), ok)
			}
		}
	}
	for name, bad := range map[string][]byte{
		"int": {0x01}, "nil": {0xc0}, "short str": {0xa3, 'a'}, "trailing": {0xa1, 'a', 'b'},
		"str32 claims 4 GB": {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, "empty": {},
	} {
		if _, ok := Bytes(bad); ok {
			t.Errorf("Bytes(%s) accepted", name)
		}
	}
}

// FuzzArray: Array accepts exactly the well-formed arrays, and its
// elements, put back together after the header, are the input.
func FuzzArray(f *testing.F) {
	f.Add([]byte{0x92, 0x81, 0xa1, 'a', 0x01, 0xc0})
	f.Add([]byte{0xdc, 0x00, 0x01, 0xa1, 'x'})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var joined []byte
		err := Array(b, func(e []byte) error { joined = append(joined, e...); return nil })
		isArray := len(b) > 0 && (b[0]&0xf0 == 0x90 || b[0] == 0xdc || b[0] == 0xdd)
		if (err == nil) != (isArray && Valid(b) == nil) {
			t.Fatalf("Array(% x) = %v; Valid says %v", b, err, Valid(b))
		}
		if err == nil && !bytes.HasSuffix(b, joined) {
			t.Fatalf("elements of % x joined are % x", b, joined)
		}
	})
}

// FuzzMap: Map accepts exactly the well-formed maps, and their keys and
// values, put back together after the header, are the input (short
// string keys are not walked: skipKey).
func FuzzMap(f *testing.F) {
	f.Add([]byte{0x82, 0xa1, 'a', 0x01, 0xa2, 'b', 'c', 0x81, 0xc0, 0xc3})
	f.Add([]byte{0x81, 0xa5, 'a'}) // a key past the end
	f.Add([]byte{0x81, 0xa1, 'a'}) // no value
	f.Add([]byte{0x81, 0xbf})      // a key of 31 bytes, none there
	f.Add([]byte{0xde, 0x00, 0x01, 0xa0, 0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var joined []byte
		err := Map(b, func(k, v []byte) error { joined = append(append(joined, k...), v...); return nil })
		isMap := len(b) > 0 && (b[0]&0xf0 == 0x80 || b[0] == 0xde || b[0] == 0xdf)
		if (err == nil) != (isMap && Valid(b) == nil) {
			t.Fatalf("Map(% x) = %v; Valid says %v", b, err, Valid(b))
		}
		if err == nil && !bytes.HasSuffix(b, joined) {
			t.Fatalf("keys and values of % x joined are % x", b, joined)
		}
	})
}

// TestElementsMapAt: walking an array of maps in one pass gives what
// Array and Map give.
func TestElementsMapAt(t *testing.T) {
	b := mustMarshal(t, []any{map[string]any{"a": 1, "b": []any{"x", nil}}, map[string]any{}, map[string]any{"c": "d"}})
	var got []string
	err := Elements(b, func(i int) (int, error) {
		return MapAt(b, i, func(k, v []byte) error {
			got = append(got, fmt.Sprintf("%x=%x", k, v))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	Array(b, func(e []byte) error {
		return Map(e, func(k, v []byte) error { want = append(want, fmt.Sprintf("%x=%x", k, v)); return nil })
	})
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != 3 {
		t.Fatalf("Elements and MapAt: %v; Array and Map: %v", got, want)
	}
	for name, bad := range map[string][]byte{
		"element not a map": {0x91, 0x01},
		"trailing":          {0x91, 0x80, 0x00},
		"claims more":       {0xdd, 0xff, 0xff, 0xff, 0xff, 0x80},
		"map truncated":     {0x91, 0x81, 0xa1, 'a'},
		"map claims more":   {0x91, 0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'a', 0x01},
	} {
		if err := Elements(bad, func(i int) (int, error) { return MapAt(bad, i, func(_, _ []byte) error { return nil }) }); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
