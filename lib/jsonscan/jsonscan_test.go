package jsonscan

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestValidAccepts(t *testing.T) {
	for _, s := range []string{
		`0`, `-0`, `1`, `-12`, `1.5`, `-0.25e10`, `1E+2`, `3e-7`, `123456789012345678901234567890`,
		`true`, `false`, `null`, `""`, `"a"`, `"\"\\\/\b\f\n\r\t"`, `"\u00e9\uD83D\uDE00"`, `"é€😀"`,
		`[]`, `[ ]`, `[1]`, `[1,2 , 3]`, `{}`, `{ }`, `{"a":1}`, `{"a" : [1, {"b": null}], "c":"d"}`,
		" \t\r\n[\n1\n]\n ", `[[[[[]]]]]`, `{"":{"":{"":""}}}`, `["\u0000"]`,
	} {
		if err := Valid([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}

func TestValidRejects(t *testing.T) {
	for _, s := range []string{
		``, ` `, `01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `0x10`, `NaN`, `Infinity`, `tru`, `nul`, `True`,
		`"`, `"abc`, `"\x"`, `"\u12"`, `"\u12G4"`, "\"\x01\"", "\"\xff\"", "\"\xc3\"", `'a'`,
		`[`, `[1`, `[1,`, `[1,]`, `[,1]`, `[1 2]`, `]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{a:1}`, `{1:1}`,
		`{"a":1 "b":2}`, `[}`, `{]`, `1 2`, `[] []`, `{}x`, `"a"b`, `nullx`, `[1]]`,
	} {
		if err := Valid([]byte(s)); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestValidDeepNesting(t *testing.T) {
	// One million levels: no recursion, memory a bit per level.
	const depth = 1_000_000
	b := append(bytes.Repeat([]byte("["), depth), bytes.Repeat([]byte("]"), depth)...)
	if err := Valid(b); err != nil {
		t.Fatal(err)
	}
	if err := Valid(b[:len(b)-1]); err == nil {
		t.Fatal("one bracket short accepted")
	}
	o := strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
	if err := Valid([]byte(o)); err != nil {
		t.Fatal(err)
	}
	mixed := strings.Repeat(`[{"a":`, depth/2) + "1" + strings.Repeat("}]", depth/2)
	if err := Valid([]byte(mixed)); err != nil {
		t.Fatal(err)
	}
	if err := Valid([]byte(strings.Repeat(`[{"a":`, 3) + "1" + strings.Repeat("]}", 3))); err == nil {
		t.Fatal("crossed brackets accepted")
	}
}

// TestDeepNestingLinear: validating costs in proportion to the depth, not
// more (a scan back over the open brackets would cost the square). Timed
// against itself on the same machine in the same run, the fastest of five
// tries each, taken in turns so that both see the same load: 8 times
// deeper takes about 8 times as long (up to 12 seen, the collector
// running), the square 64.
func TestDeepNestingLinear(t *testing.T) {
	value := func(depth int) []byte {
		return []byte(strings.Repeat(`[{"a":`, depth) + "1" + strings.Repeat("}]", depth))
	}
	timed := func(b []byte) time.Duration {
		start := time.Now()
		if err := Valid(b); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	shallow, deep := value(50_000), value(400_000)
	small, large := time.Duration(1<<62), time.Duration(1<<62)
	for range 5 {
		small, large = min(small, timed(shallow)), min(large, timed(deep))
	}
	if ratio := float64(large) / float64(small); ratio > 32 {
		t.Errorf("8 times deeper took %.1f times as long (%v, %v): more than linear", ratio, small, large)
	}
}

func TestArrayAndObject(t *testing.T) {
	b := []byte(` [ {"topic":"t","value":{"x":[1,2]}} , 7,"s" ,[ ] ] `)
	var elems []string
	if err := Array(b, func(e []byte) error { elems = append(elems, string(e)); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []string{`{"topic":"t","value":{"x":[1,2]}}`, `7`, `"s"`, `[ ]`}
	if strings.Join(elems, "|") != strings.Join(want, "|") {
		t.Fatalf("elements %q, want %q", elems, want)
	}
	var members []string
	if err := Object([]byte(elems[0]), func(k, v []byte) error {
		members = append(members, string(k)+"="+string(v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(members, "|"); got != `"topic"="t"|"value"={"x":[1,2]}` {
		t.Fatalf("members %s", got)
	}
	if err := Array([]byte(`[]`), func([]byte) error { t.Fatal("element in []"); return nil }); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	n := 0
	if err := Array([]byte(`[1,2,3`), func([]byte) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("stop: %v after %d", err, n)
	}
	for _, bad := range []string{`{}`, `1`, `[1,]`, `[1] 2`, `[1`, `[1 2]`} {
		if err := Array([]byte(bad), func([]byte) error { return nil }); err == nil {
			t.Errorf("Array(%s) accepted", bad)
		}
	}
	for _, bad := range []string{`[]`, `{"a"}`, `{"a":1,}`, `{"a":1} x`, `{1:2}`} {
		if err := Object([]byte(bad), func(_, _ []byte) error { return nil }); err == nil {
			t.Errorf("Object(%s) accepted", bad)
		}
	}
}

func TestString(t *testing.T) {
	for raw, want := range map[string]string{
		`""`: "", `"abc"`: "abc", `"a\"b"`: `a"b`, `"\\\/\b\f\n\r\t"`: "\\/\b\f\n\r\t",
		`"\u00e9"`: "é", `"\uD83D\uDE00"`: "😀", `"\uD83D"`: "\uFFFD", `"\uDE00x"`: "\uFFFDx", `"é"`: "é",
	} {
		got, err := String([]byte(raw))
		if err != nil || got != want {
			t.Errorf("String(%s) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, bad := range []string{``, `"`, `abc`, `"\q"`, `"a" `} {
		if _, err := String([]byte(bad)); err == nil {
			t.Errorf("String(%s) accepted", bad)
		}
	}
}

// FuzzValid checks Valid against encoding/json (plus UTF-8, which
// encoding/json does not check) and that Array and Object never fail on
// what Valid accepts when the value is of their kind.
func FuzzValid(f *testing.F) {
	for _, s := range []string{`[{"topic":"t","value":[1,{"a":null}]}]`, `{"a":"\u00e9"}`, `-1.5e3`, `"x`, `[1,]`, "\"\xff\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Valid(b)
		std := json.Valid(b) && utf8.Valid(b)
		if deep := bytes.Count(b, []byte("[")) + bytes.Count(b, []byte("{")); deep > 9000 {
			return // encoding/json refuses nesting over 10,000
		}
		if (err == nil) != std {
			t.Fatalf("Valid(%q) = %v, encoding/json says valid=%v", b, err, std)
		}
		if err != nil {
			return
		}
		var v any
		json.Unmarshal(b, &v)
		switch v.(type) {
		case []any:
			if err := Array(b, func([]byte) error { return nil }); err != nil {
				t.Fatalf("Array(%q): %v", b, err)
			}
		case map[string]any:
			if err := Object(b, func(k, _ []byte) error { _, err := String(k); return err }); err != nil {
				t.Fatalf("Object(%q): %v", b, err)
			}
		}
	})
}

// TestArrayNamesTheElement: an element that is not one JSON value is
// reported with its index; a fault between or after the elements is not
// an element's.
func TestArrayNamesTheElement(t *testing.T) {
	for _, tc := range []struct {
		in    string
		index int // -1: no ElementError
	}{
		{`[x]`, 0},
		{`[1, {"a":}]`, 1},
		{`[1, 2, "\x"]`, 2},
		{`[1,]`, -1},
		{`[1,`, -1},
		{`[`, -1},
		{`[1,,2]`, -1},
		{`[1 2]`, -1},
		{`[1`, -1},
		{`[1] 2`, -1},
	} {
		err := Array([]byte(tc.in), func([]byte) error { return nil })
		var ee *ElementError
		switch {
		case err == nil:
			t.Errorf("Array(%s) accepted", tc.in)
		case tc.index < 0 && errors.As(err, &ee):
			t.Errorf("Array(%s): %v, want no element named", tc.in, err)
		case tc.index >= 0 && (!errors.As(err, &ee) || ee.Index != tc.index):
			t.Errorf("Array(%s): %v, want element %d named", tc.in, err, tc.index)
		}
	}
}
