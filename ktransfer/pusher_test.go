package ktransfer

import (
	"errors"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		a    attempt
		want verdict
	}{
		{attempt{status: 200}, pushed}, {attempt{status: 204}, pushed},
		{attempt{status: 500}, retry}, {attempt{status: 503}, retry}, {attempt{status: 408}, retry}, {attempt{status: 429}, retry},
		{attempt{err: errors.New("connection refused")}, retry},
		{attempt{status: 400}, permanent}, {attempt{status: 404}, permanent}, {attempt{status: 413}, permanent},
		{attempt{status: 301}, permanent},
	} {
		if got, _ := judge(tc.a); got != tc.want {
			t.Errorf("judge(%+v) = %v, want %v", tc.a, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	base, ceiling := 200*time.Millisecond, 2*time.Second
	for n, want := range map[int]time.Duration{1: 200 * time.Millisecond, 2: 400 * time.Millisecond, 3: 800 * time.Millisecond, 4: 1600 * time.Millisecond, 5: 2 * time.Second, 50: 2 * time.Second} {
		for range 100 {
			got := backoff(n, base, ceiling)
			if got < want*8/10 || got > want*12/10 {
				t.Fatalf("backoff(%d) = %v, want %v ±20%%", n, got, want)
			}
		}
	}
	if backoff(3, 0, 0) != 0 {
		t.Errorf("zero interval must not wait")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"3": 3 * time.Second, " 1 ": time.Second, "0": 0, "-5": 0, "soon": 0, "": 0, "99999": maxRetryAfter,
		"Sat, 21 Nov 2026 12:00:10 GMT": 10 * time.Second, "Sat, 21 Nov 2026 11:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestMethodOf(t *testing.T) {
	enc := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		v    []byte
		want string
		err  error
	}{
		{enc(map[string]any{"method": "Login", "uid": 3}), "Login", nil},
		{enc(map[string]any{"a": []any{1, map[string]any{"method": "inner"}}, "method": "Outer"}), "Outer", nil},
		{enc(map[any]any{7: "x", "method": "Num"}), "Num", nil},
		{enc(map[string]any{"uid": 3}), "", errNoMethod},
		{enc(map[string]any{"method": 42}), "", errNoMethod},
		{enc([]any{"method", "Login"}), "", errNotMap},
		{enc("method"), "", errNotMap},
		{[]byte{0x81, 0xa6}, "", errNotMap},
		{nil, "", errNotMap},
	} {
		got, err := methodOf(tc.v)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("methodOf(% x) = %q %v, want %q %v", tc.v, got, err, tc.want, tc.err)
		}
	}
}

func FuzzMethodOf(f *testing.F) {
	f.Add([]byte{0x81, 0xa6, 'm', 'e', 't', 'h', 'o', 'd', 0xa1, 'x'})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = methodOf(b) // must not panic or hang
	})
}
