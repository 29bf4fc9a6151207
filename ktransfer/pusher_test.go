package ktransfer

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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
		t.Errorf("zero interval and zero cap must not wait")
	}
}

// TestBackoffWithinIntervalAndCap: DESIGN has retries
// fail_retry_interval_ms apart, and max_retry_interval_ms caps them. The
// ±20% jitter went past both: a first retry 160 ms after a failure at
// fail_retry_interval_ms: 200, one at the cap of 2 s after 2.4 s. The
// jitter stays within them now.
func TestBackoffWithinIntervalAndCap(t *testing.T) {
	base, ceiling := 200*time.Millisecond, 2*time.Second
	for n := 1; n <= 8; n++ {
		atBound := 0
		for range 2000 {
			got := backoff(n, base, ceiling)
			if got < base || got > ceiling {
				t.Fatalf("backoff(%d, %v, %v) = %v: outside [fail_retry_interval_ms, max_retry_interval_ms]", n, base, ceiling, got)
			}
			if got == base || got == ceiling {
				atBound++
			}
		}
		// Still spread: not clipped onto the bounds, where workers that
		// failed together would retry together.
		if atBound > 100 {
			t.Errorf("backoff(%d, %v, %v): %d of 2000 waits exactly at a bound, want them spread", n, base, ceiling, atBound)
		}
	}
	if got := backoff(5, base, base); got != base {
		t.Errorf("backoff with max_retry_interval_ms at the interval: %v, want %v", got, base)
	}
}

// TestBackoffZeroIntervalGrows: fail_retry_interval_ms 0 retries at once
// the first time, then doubles from 1 ms up to the cap. Before, a dead
// backend (connection refused at once) was retried without pause, each
// attempt logged at Warn: a worker spun on it, filling the log.
func TestBackoffZeroIntervalGrows(t *testing.T) {
	ceiling := 10 * time.Second
	for n, want := range map[int]time.Duration{1: 0, 2: time.Millisecond, 3: 2 * time.Millisecond, 12: 1024 * time.Millisecond, 30: ceiling} {
		for range 100 {
			got := backoff(n, 0, ceiling)
			if got < want*8/10 || got > want*12/10 {
				t.Fatalf("backoff(%d, 0, %v) = %v, want %v ±20%%", n, ceiling, got, want)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"3": 3 * time.Second, " 1 ": time.Second, "0": 0, "-5": 0, "soon": 0, "": 0, "99999": maxRetryAfter,
		"Sat, 21 Nov 2026 12:00:10 GMT": 10 * time.Second, "Sat, 21 Nov 2026 11:00:00 GMT": 0,
		// The two obsolete HTTP-date forms, which a recipient must accept
		// as well (RFC 9110, 5.6.7): RFC 850's and asctime's.
		"Saturday, 21-Nov-26 12:00:20 GMT": 20 * time.Second, "Sat Nov 21 12:00:30 2026": 30 * time.Second,
		// Not HTTP's form, but read before: a backend writing its date with
		// "UTC" or a numeric zone keeps being waited for.
		"Sat, 21 Nov 2026 12:00:40 UTC": 40 * time.Second, "Sat, 21 Nov 2026 12:00:50 +0000": 50 * time.Second,
		// Seconds beyond what a time.Duration holds wait the longest, not
		// a wrapped-around negative time.
		"100000000000": maxRetryAfter, "9223372036854775807": maxRetryAfter, "99999999999999999999": maxRetryAfter,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

// methodOf is msgpackscan.MapString or jsonscan.Object, tested there; the
// fuzz target here runs it on arbitrary record values as the workers do.
func FuzzMethodOf(f *testing.F) {
	f.Add([]byte{0x81, 0xa6, 'm', 'e', 't', 'h', 'o', 'd', 0xa1, 'x'})
	f.Add([]byte(` {"n":[1,{"method":2}],"method":"x"}`))
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = methodOf(b) // must return, quickly, without a large allocation
	})
}

// TestPushHeaderLines: the header lines of a push as they go on the wire,
// names spelled as they always were, signed or a replay; a Retry-After is
// read from a 503 (and not needed from a 2xx).
func TestPushHeaderLines(t *testing.T) {
	for _, tc := range []struct {
		name    string
		signed  bool
		replay  bool
		answer  string
		status  int
		wait    time.Duration
		want    []string
		present []string
	}{
		{name: "owned", answer: "HTTP/1.1 200 OK\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n", status: 200,
			want: []string{"X-Custom: v", "X-Kafka-Topic: orders.v1", "X-Kafka-Partition: 3", "X-Kafka-Offset: 1234567", "X-Ktransfer-Epoch: 42"}},
		{name: "replay", replay: true, answer: "HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n", status: 503, wait: 7 * time.Second,
			want: []string{"X-Custom: v", "X-Kafka-Topic: orders.v1", "X-Kafka-Partition: 3", "X-Kafka-Offset: 1234567", "X-Ktransfer-Replay: 1"}},
		{name: "signed", signed: true, answer: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", status: 200,
			want:    []string{"X-Custom: v", "X-Kafka-Topic: orders.v1", "X-Kafka-Partition: 3", "X-Kafka-Offset: 1234567", "X-Ktransfer-Epoch: 42", "Webhook-Id: orders.v1-3-1234567"},
			present: []string{"Webhook-Timestamp: ", "Webhook-Signature: v1,"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, got := rawBackend(t, tc.answer)
			m := DefaultModule()
			m.Protocol.WriteTimeoutMs, m.Protocol.ConnTimeoutMs = 2000, 2000 // as module(): 100 ms fail a loaded machine
			m.Topic = "orders.v1"
			m.Protocol.URI = "/push?key={#KEY}"
			m.Protocol.Headers = []map[string]string{{"x-custom": "v"}}
			m.BackendServers = []string{ln.Addr().String()}
			if tc.signed {
				m.Protocol.SigningSecrets = []string{"whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))}
			}
			p, err := newPusher(m)
			if err != nil {
				t.Fatal(err)
			}
			r := &record{msg: &kgo.Record{Topic: "orders.v1", Partition: 3, Offset: 1234567, Key: []byte("k"), Value: []byte("v")}}
			if !tc.replay {
				r.part = &partition{epoch: 42}
			}
			var buf []byte
			a := p.push(0, r, &buf)
			if a.err != nil || a.status != tc.status || a.retryAfter != tc.wait {
				t.Fatalf("push: %+v; want status %d, retry after %v", a, tc.status, tc.wait)
			}
			lines := (<-got).lines
			joined := "\n" + strings.Join(lines, "\n") + "\n"
			for _, w := range tc.want {
				if !strings.Contains(joined, "\n"+w+"\n") {
					t.Errorf("no header line %q in\n%s", w, strings.Join(lines, "\n"))
				}
			}
			for _, w := range tc.present {
				if !strings.Contains(joined, "\n"+w) {
					t.Errorf("no header line starting %q in\n%s", w, strings.Join(lines, "\n"))
				}
			}
		})
	}
}
