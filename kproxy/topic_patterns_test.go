package kproxy_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
)

// TestTopicPatternsThatMatchNoTopicRefused: README (Configuration):
// "Unknown keys, wrong types and bad values stop the start with one line per
// problem naming file, field and value"; Validate's own reason says an
// entry "must be a topic name or a pattern". An entry no topic name can
// ever match — a trailing space (a quoted copy-paste), a '/', a Kafka-
// internal name — loads without a word, and every request for the topic
// meant is refused 403 at run time instead.
func TestTopicPatternsThatMatchNoTopicRefused(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	os.WriteFile(f, []byte("broker_hosts: [10.1.4.17:5031]\n"+
		"topics_allowed: [\"orders \", \"billing/*\"]\n"+
		"clients:\n - name: shop\n   secret: s\n   topics: [\"orders \"]\n"), 0o644)
	_, err := kproxy.LoadConfig(f)
	for _, want := range []string{f + `: topics_allowed[0]: must be a topic name or a pattern like billing.*, got "orders "`,
		f + `: topics_allowed[1]: must be a topic name or a pattern like billing.*, got "billing/*"`,
		f + `: clients[0].topics[0]: must be a topic name or a pattern, got "orders "`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig: %v\nlacks %q", err, want)
		}
	}
}
