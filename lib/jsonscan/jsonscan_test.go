package jsonscan

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidAccepts(t *testing.T) {
	for _, s := range []string{
		`{}`, `[]`, `""`, `0`, `-0`, `1`, `-12.5e+3`, `1E9`, `0.000`, `123456789012345678901234567890`,
		`true`, `false`, `null`,
		`{"method":"TestUserName","uid":42,"tags":["a","b"],"nested":{"x":[1,{"y":null}]}}`,
		`"\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00"`, `"é ü 日本 😀"`, `"\ud800"`, // a lone surrogate escape: json.Valid takes it
		" \t\r\n{ \"a\" : [ 1 , 2 ] }\n ", // white space around and inside is part of the text
		`[[[[[[[[[[]]]]]]]]]]`, `{"":""}`, `{"a":{},"b":[],"c":""}`,
		strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth),
		strings.Repeat(`{"a":`, MaxDepth) + "1" + strings.Repeat("}", MaxDepth),
	} {
		if err := Valid([]byte(s)); err != nil {
			t.Errorf("%.60q: %v", s, err)
		}
		if !json.Valid([]byte(s)) {
			t.Errorf("%.60q: the test says valid, encoding/json does not", s)
		}
	}
}

func TestValidRejects(t *testing.T) {
	for _, tc := range []struct{ in, reason string }{
		{"", "empty"},
		{" \n\t", "only white space"},
		{`{"a":1} x`, "after the JSON value at offset 8"},
		{`{"a":1}{"b":2}`, "after the JSON value at offset 7"},
		{`1 2`, "after the JSON value at offset 2"},
		{`01`, "after the JSON value at offset 1"},
		{`{"a":1,}`, "invalid character '}' at offset 7"},
		{`[1,]`, "invalid character ']' at offset 3"},
		{`[1 2]`, "invalid character '2' at offset 3"},
		{`{"a" 1}`, "invalid character '1' at offset 5"},
		{`{1:2}`, "invalid character '1' at offset 1"},
		{`{"a":1]`, "invalid character ']' at offset 6"},
		{`[1}`, "invalid character '}' at offset 2"},
		{`1.`, "truncated"},
		{`1.e5`, "invalid character 'e' at offset 2"},
		{`.5`, "invalid character '.' at offset 0"},
		{`-`, "truncated"},
		{`-a`, "invalid character 'a' at offset 1"},
		{`1e`, "truncated"},
		{`1e+`, "truncated"},
		{`+1`, "invalid character '+' at offset 0"},
		{`tru`, "truncated"},
		{`trUe`, "invalid character 'U' at offset 2"},
		{`nul`, "truncated"},
		{`NaN`, "invalid character 'N' at offset 0"},
		{"\"a\x01b\"", "control character 0x01 in a string at offset 2"},
		{"\"tab\there\"", "control character 0x09 in a string at offset 4"},
		{`"\q"`, "invalid escape at offset 1"},
		{`"\u12g4"`, "invalid escape at offset 1"},
		{`"\u12"`, "invalid escape at offset 1"},
		{"\"\xff\"", "invalid UTF-8 at offset 1"},
		{"\"\xed\xa0\x80\"", "invalid UTF-8 at offset 1"}, // a surrogate encoded in UTF-8
		{"\"\xc3\"", "invalid UTF-8 at offset 1"},
		{`"abc`, "truncated"},
		{`[`, "truncated"},
		{`{"a":`, "truncated"},
		{`{"a"`, "truncated"},
		{`[1,`, "truncated"},
		{"\x00", "invalid byte 0x00 at offset 0"},
		{"\ufeff{}", "invalid byte 0xef at offset 0"}, // a byte order mark is not JSON text
		{strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), "nested deeper than 512"},
	} {
		err := Valid([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%.40q: error %v, want one containing %q", tc.in, err, tc.reason)
			continue
		}
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%.40q: error %q is not one line", tc.in, err)
		}
	}
}

// Deep nesting is refused at the limit, in time and memory independent of
// the depth claimed: a million open brackets must not recurse or allocate.
func TestDeepNestingBounded(t *testing.T) {
	b := bytes.Repeat([]byte{'['}, 1_000_000)
	var err error
	allocs := testing.AllocsPerRun(5, func() { err = Valid(b) })
	if !errors.Is(err, ErrTooDeep) {
		t.Fatalf("a million [: %v, want ErrTooDeep", err)
	}
	if allocs > 1 { // the error message
		t.Errorf("%v allocations to refuse deep nesting", allocs)
	}
	ok := []byte(strings.Repeat(`[{"k":`, MaxDepth/2) + "0" + strings.Repeat("}]", MaxDepth/2))
	if allocs := testing.AllocsPerRun(5, func() { err = Valid(ok) }); err != nil || allocs != 0 {
		t.Errorf("depth %d: %v, %v allocations", MaxDepth, err, allocs)
	}
}

// Skip finds where a value ends inside a larger text (a batch reads the
// values of an array with it).
func TestSkip(t *testing.T) {
	b := []byte(`[ {"v":[1,"]"]} , "x\"]" ,3.5e1,true ]`)
	var got []string
	i := SkipSpace(b, 1)
	for b[i] != ']' {
		end, err := Skip(b, i)
		if err != nil {
			t.Fatalf("at %d: %v", i, err)
		}
		got = append(got, string(b[i:end]))
		i = SkipSpace(b, end)
		if b[i] == ',' {
			i = SkipSpace(b, i+1)
		}
	}
	want := []string{`{"v":[1,"]"]}`, `"x\"]"`, `3.5e1`, `true`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("values %q, want %q", got, want)
	}
	if end, err := Skip(b, 0); err != nil || end != len(b) {
		t.Errorf("Skip of the whole array: %d %v, want %d", end, err, len(b))
	}
	if _, err := Skip(b, len(b)); err == nil {
		t.Errorf("Skip past the end: no error")
	}
}

// depth is the deepest nesting of the valid JSON text b, read with
// encoding/json's tokenizer.
func depth(t *testing.T, b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	d, deepest := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return deepest
		}
		if delim, ok := tok.(json.Delim); ok {
			if delim == '[' || delim == '{' {
				d++
				deepest = max(deepest, d)
			} else {
				d--
			}
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,2,{"b":null}]}`, ` "x\u00e9\n" `, `-0.5e-7`, `[1,]`, `{"a":1}{`, "\"\xff\"", `tru`,
		strings.Repeat("[", 600) + strings.Repeat("]", 600), `{"a" : "b" , "c" : [ ] }`,
		// strings longer than eight bytes, with something special past them
		`["0123456789abcdef\"ghijklmnopq", "0123456789é01234567\u0041"]`, "\"0123456789abcdef\x01\"",
		"\"0123456789abcdef\xc3\xa9\xff\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := Valid(b)
		// The reference: encoding/json, which also requires exactly one
		// value with only white space around it; kproxy in addition
		// requires UTF-8 (RFC 8259: JSON text exchanged between systems)
		// and refuses nesting deeper than MaxDepth.
		ok := json.Valid(b) && utf8.Valid(b)
		if ok && depth(t, b) > MaxDepth {
			if !errors.Is(err, ErrTooDeep) {
				t.Fatalf("%q nested deeper than %d: %v, want ErrTooDeep", b, MaxDepth, err)
			}
			return
		}
		if (err == nil) != ok {
			t.Fatalf("%q: Valid says %v, encoding/json.Valid %v, utf8.Valid %v", b, err, json.Valid(b), utf8.Valid(b))
		}
		if err != nil {
			return
		}
		// Skip from the first non-space byte ends where the value ends:
		// only white space after it.
		i := SkipSpace(b, 0)
		end, err := Skip(b, i)
		if err != nil || SkipSpace(b, end) != len(b) || (end > i && isSpace(b[end-1])) {
			t.Fatalf("%q: Skip from %d = %d, %v", b, i, end, err)
		}
	})
}

func BenchmarkValid(b *testing.B) {
	// The benchmark's 200-byte body, as JSON.
	body := []byte(`{"method":"TestUserName","uid":12345,"payload":"` + strings.Repeat("x", 150) + `"}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := Valid(body); err != nil {
			b.Fatal(err)
		}
	}
}

// special must flag every eight bytes holding a byte a string cannot take
// as it is, wherever it sits.
func TestSpecial(t *testing.T) {
	for _, c := range []byte{'"', '\\', 0x00, 0x01, 0x1f, 0x80, 0xc3, 0xff} {
		for pos := range 8 {
			b := []byte("abcdefgh")
			b[pos] = c
			if special(binary.LittleEndian.Uint64(b)) == 0 {
				t.Errorf("byte 0x%02x at %d not flagged", c, pos)
			}
		}
	}
	for c := 0x20; c < 0x80; c++ {
		if c == '"' || c == '\\' {
			continue
		}
		b := bytes.Repeat([]byte{byte(c)}, 8)
		if special(binary.LittleEndian.Uint64(b)) != 0 {
			t.Errorf("plain byte %q flagged", rune(c))
		}
	}
}
