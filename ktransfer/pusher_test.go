package ktransfer

import (
	"errors"
	"testing"
	"time"
)

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		a    attempt
		want verdict
	}{
		{attempt{status: 200}, pushed}, {attempt{status: 204}, pushed},
		{attempt{status: 500}, retry}, {attempt{status: 503}, retry}, {attempt{status: 408}, retry}, {attempt{status: 429}, retry},
		{attempt{err: errors.New("connection refused")}, retry},
		{attempt{status: 400}, permanent}, {attempt{status: 401}, permanent}, {attempt{status: 403}, permanent},
		{attempt{status: 404}, permanent}, {attempt{status: 413}, permanent},
		// 1xx and 3xx say nothing against the record: retried as 5xx.
		{attempt{status: 100}, retry}, {attempt{status: 301}, retry}, {attempt{status: 302}, retry},
		{attempt{status: 304}, retry}, {attempt{status: 307}, retry},
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

// methodOf is msgpackscan.MapString, tested there; the fuzz target here
// runs it on arbitrary record values as the workers do.
func FuzzMethodOf(f *testing.F) {
	f.Add([]byte{0x81, 0xa6, 'm', 'e', 't', 'h', 'o', 'd', 0xa1, 'x'})
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = methodOf(b) // must return, quickly, without a large allocation
	})
}
