package ktransfer_test

import (
	"strings"
	"testing"
)

// TestRetryCapWithOneRetryWarned: with max_retry_times 1 the one retry
// waits fail_retry_interval_ms (at once when it is 0), never doubled, so
// max_retry_interval_ms, the cap of the doubling, has no effect: set, it
// is warned of as with max_retry_times 0. fail_retry_interval_ms has one,
// and from 2 retries on the cap can matter: nothing is said.
func TestRetryCapWithOneRetryWarned(t *testing.T) {
	const base = "topic: t\nprotocol:\n name: http\n uri: /p\nbackend_servers: [127.0.0.1:80]\n"
	for _, tc := range []struct {
		module string
		want   string // the key warned of, "" for none
	}{
		{"max_retry_times: 1\nfail_retry_interval_ms: 500\nmax_retry_interval_ms: 4000\n", "max_retry_interval_ms: 4000"},
		{"max_retry_times: 1\nfail_retry_interval_ms: 0\nmax_retry_interval_ms: 4000\n", "max_retry_interval_ms: 4000"},
		{"max_retry_times: 1\nfail_retry_interval_ms: 500\n", ""},
		{"max_retry_times: 2\nfail_retry_interval_ms: 500\nmax_retry_interval_ms: 600\n", ""},
	} {
		cfg, module, _ := loadWithModule(t, base+tc.module, "")
		got := cfg.Warnings()
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("%q: warnings %q, want none", tc.module, got)
		case tc.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], module+": "+tc.want+" has no effect: ")):
			t.Errorf("%q: warnings %q, want one for %q", tc.module, got, tc.want)
		}
	}
}
