package ktransfer_test

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestRetryWithoutPauseWarned: max_retry_times -1 (until success) with
// fail_retry_interval_ms and max_retry_interval_ms both 0 retries a
// refused push at once, for ever: a backend that refuses at once gets
// it in a tight loop (and, with no dead_letter_topic, a log line each
// time). -check said nothing; it is warned of now. A pause, or a bounded
// number of retries, is not.
func TestRetryWithoutPauseWarned(t *testing.T) {
	const base = "topic: t\nprotocol:\n name: http\n uri: /p\nbackend_servers: [127.0.0.1:80]\n"
	const want = "fail_retry_interval_ms: 0 and max_retry_interval_ms: 0 with max_retry_times: -1 retry a failed push with no pause, for ever"
	for _, tc := range []struct {
		module string
		warned bool
	}{
		{"fail_retry_interval_ms: 0\nmax_retry_interval_ms: 0\n", true},
		{"max_retry_times: -1\nfail_retry_interval_ms: 0\nmax_retry_interval_ms: 0\n", true},
		{"fail_retry_interval_ms: 0\n", false},
		{"max_retry_times: 5\nfail_retry_interval_ms: 0\nmax_retry_interval_ms: 0\n", false},
	} {
		cfg, module, _ := loadWithModule(t, base+tc.module, "")
		got := cfg.Warnings()
		found := len(got) == 1 && strings.HasPrefix(got[0], module+": "+want)
		if found != tc.warned || (!tc.warned && len(got) != 0) {
			t.Errorf("%q: warnings %q, want warned %v (%q)", tc.module, got, tc.warned, want)
		}
	}
}

// TestRetryWithoutPauseLoggedAtStart: the same warning in the log when the
// module starts (not only from -check), naming its file.
func TestRetryWithoutPauseLoggedAtStart(t *testing.T) {
	var logs runtest.Log
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	c.module(t, "m", "t", "m", bk.URL, "")
	c.editModule(t, "m", "fail_retry_interval_ms: 10\nmax_retry_interval_ms: 100\n", "fail_retry_interval_ms: 0\nmax_retry_interval_ms: 0\n")
	file := filepath.Join(c.dir, "modules", "m.yaml")
	startConf(t, c, slog.New(slog.NewTextHandler(&logs, nil)))
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "unwise config") &&
			strings.Contains(line, "file="+file) && strings.Contains(line, "retry a failed push with no pause") {
			return
		}
	}
	t.Fatalf("no warning of the retries without pause at the start; log:\n%s", logs.String())
}
