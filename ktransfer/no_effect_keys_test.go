package ktransfer_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestBreakerCooldownWithoutBreakerWarned attacks the rule that a key is
// never taken silently: breaker_cooldown_ms with breaker_failures 0 (the
// default: no circuit breaker) has no effect, and was accepted without a
// word. The module keeps loading, and one warning naming the module file,
// the key and its value is logged when the module starts, at start-up and
// when a reload starts it anew; with a breaker the key gets none.
func TestBreakerCooldownWithoutBreakerWarned(t *testing.T) {
	var logs runtest.Log
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	c.module(t, "m", "t", "m", bk.URL, "breaker_cooldown_ms: 5000\n")
	r := startConf(t, c, slog.New(slog.NewTextHandler(&logs, nil)))
	file := filepath.Join(c.dir, "modules", "m.yaml")
	warnings := func() []string {
		var out []string
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "no effect") {
				out = append(out, line)
			}
		}
		return out
	}
	check := func(when string, want int, value string) {
		t.Helper()
		w := warnings()
		if len(w) != want {
			t.Fatalf("%s: %d warnings of keys without effect, want %d; log:\n%s", when, len(w), want, logs.String())
		}
		if value != "" {
			last := w[len(w)-1]
			if !strings.Contains(last, "file="+file) || !strings.Contains(last, "key=breaker_cooldown_ms") || !strings.Contains(last, "value="+value) {
				t.Errorf("%s: warning %q does not name file %s, key breaker_cooldown_ms and value %s", when, last, file, value)
			}
		}
	}
	check("at start", 1, "5000")
	waitFor(t, "the partition owned", 20*time.Second, func() bool { return len(e.owners(t, "m", "t")) == 1 })

	c.module(t, "m", "t", "m", bk.URL, "breaker_failures: 3\nbreaker_cooldown_ms: 5000\n")
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	check("after a reload with a breaker", 1, "")

	c.module(t, "m", "t", "m", bk.URL, "breaker_cooldown_ms: 7000\n")
	if err := r.tr.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	check("after a reload without a breaker", 2, "7000")
}
