package kproxy_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestKeysWithoutEffectWarnedAtStart attacks the rule that a key is never
// taken silently: spool_after_ms and spool_max_bytes without spool_dir
// (the spool is off), and grpc_max_concurrent_streams without grpc_port
// (gRPC is off), were accepted without a word, the operator believing the
// spool or gRPC tuned. The file keeps loading (configs that worked keep
// working), and the start logs one warning per such key naming the file,
// the key and its value. A key that takes effect gets none.
func TestKeysWithoutEffectWarnedAtStart(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	spool := t.TempDir()
	keys := "spool_after_ms: 500\nspool_max_bytes: 2097152\ngrpc_max_concurrent_streams: 50\n"
	for _, tc := range []struct {
		lines  string
		warned []string // key=value
	}{
		{keys, []string{"spool_after_ms=500", "spool_max_bytes=2097152", "grpc_max_concurrent_streams=50"}},
		{keys + "spool_dir: " + spool + "\n", []string{"grpc_max_concurrent_streams=50"}},
		{"", nil},
	} {
		f := filepath.Join(t.TempDir(), "kproxy.yaml")
		doc := fmt.Sprintf("port: 0\nbroker_hosts:\n - %s\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\n%s", c.ListenAddrs()[0], tc.lines)
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := kproxy.LoadConfig(f)
		if err != nil {
			t.Fatalf("%q: %v", tc.lines, err)
		}
		warnings, out := startWarnings(t, cfg, "no effect")
		if len(warnings) != len(tc.warned) {
			t.Errorf("file with %q: %d warnings of keys without effect, want %d; log:\n%s", tc.lines, len(warnings), len(tc.warned), out)
			continue
		}
		for _, kv := range tc.warned {
			key, value, _ := strings.Cut(kv, "=")
			found := false
			for _, w := range warnings {
				found = found || strings.Contains(w, "file="+f) && strings.Contains(w, "key="+key) && strings.Contains(w, "value="+value)
			}
			if !found {
				t.Errorf("file with %q: no warning naming file %s, key %s and value %s; log:\n%s", tc.lines, f, key, value, out)
			}
		}
	}
}

// startWarnings builds a kproxy from cfg (and closes it), returning the
// lines it logged at level WARN that contain match, and its whole log.
func startWarnings(t *testing.T, cfg kproxy.Config, match string) ([]string, string) {
	t.Helper()
	var out runtest.Log
	srv, err := kproxy.New(cfg, slog.New(slog.NewTextHandler(&out, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv.Close()
	var warnings []string
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, match) {
			warnings = append(warnings, line)
		}
	}
	return warnings, out.String()
}
