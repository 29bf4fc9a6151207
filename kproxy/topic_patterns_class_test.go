package kproxy_test

import (
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
)

// TestPatternsMatchingTopicsLoad: entries that path.Match parses
// and that match topic names (the matcher kproxy uses at run time,
// access.go matchAny) were refused by 9f617d9 because they hold a
// character outside the allowed set inside a character class: "[^ ]*"
// and "[^/]*" (any topic), "orders.[!-~]*", "app[+-9]" (app1).
func TestPatternsMatchingTopicsLoad(t *testing.T) {
	for _, pat := range []string{"[^ ]*", "[^/]*", "orders.[!-~]*", "app[+-9]"} {
		matches, _ := path.Match(pat, "orders.eu")
		if !matches {
			matches, _ = path.Match(pat, "app1")
		}
		if !matches {
			t.Fatalf("%q matches neither orders.eu nor app1", pat)
		}
		f := filepath.Join(t.TempDir(), "kproxy.yaml")
		os.WriteFile(f, []byte("broker_hosts: [10.1.4.17:5031]\ntopics_allowed: [\""+pat+"\"]\n"), 0o644)
		if _, err := kproxy.LoadConfig(f); err != nil {
			t.Errorf("topics_allowed %q matches topics at run time, refused at start: %v", pat, err)
		}
	}
}
