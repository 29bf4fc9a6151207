package ktransfer_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestKeysWithoutEffectWarned attacks the rule that a key is never
// taken silently: with max_retry_times 0 a failed push is given up at once,
// so fail_retry_interval_ms and max_retry_interval_ms (the spacing of
// retries) have no effect; with serialize_by_key false no record is
// ordered by its key, so dispatch (how keys find workers) has none. Each
// such key set by the file is warned of (Config.Warnings: -check and the
// module's start), naming the file, the key and its value; where the key
// matters, nothing is said.
func TestKeysWithoutEffectWarned(t *testing.T) {
	const base = "topic: t\nprotocol:\n name: http\n uri: /p\nbackend_servers: [127.0.0.1:80]\n"
	for _, tc := range []struct {
		name, module string
		want         []string // "key: value", in the order warned
	}{
		{"no retries, intervals set", "max_retry_times: 0\nfail_retry_interval_ms: 500\nmax_retry_interval_ms: 4000\n",
			[]string{"fail_retry_interval_ms: 500", "max_retry_interval_ms: 4000"}},
		{"no retries, cap set", "max_retry_times: 0\nmax_retry_interval_ms: 4000\n", []string{"max_retry_interval_ms: 4000"}},
		{"no retries, nothing else set", "max_retry_times: 0\n", nil},
		{"retries", "max_retry_times: 3\nfail_retry_interval_ms: 500\nmax_retry_interval_ms: 4000\n", nil},
		{"retries forever", "fail_retry_interval_ms: 500\nmax_retry_interval_ms: 4000\n", nil},
		{"keys not serialized, dispatch set", "serialize_by_key: false\ndispatch: hash\n", []string{"dispatch: hash"}},
		{"keys serialized, dispatch set", "serialize_by_key: true\ndispatch: hash\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, module, _ := loadWithModule(t, base+tc.module, "")
			got := cfg.Warnings()
			var keys []string
			for _, w := range got {
				rest, ok := strings.CutPrefix(w, module+": ")
				if !ok || !strings.Contains(rest, " has no effect: ") {
					t.Errorf("warning %q does not read %q", w, module+": KEY: VALUE has no effect: REASON")
					continue
				}
				keys = append(keys, rest[:strings.Index(rest, " has no effect: ")])
			}
			if !slices.Equal(keys, tc.want) {
				t.Errorf("warnings %q, want them for %q", got, tc.want)
			}
		})
	}
}

// loadWithModule writes module m (the file's text module) and a
// ktransfer.yaml enabling it, with extra at its end, into a directory of
// its own, and loads them; the test fails if they do not load. It returns
// the config and the paths of the two files.
func loadWithModule(t *testing.T, module, extra string) (cfg ktransfer.Config, modulePath, confPath string) {
	t.Helper()
	dir := t.TempDir()
	modulePath = filepath.Join(dir, "m.yaml")
	if err := os.WriteFile(modulePath, []byte(module), 0o644); err != nil {
		t.Fatal(err)
	}
	confPath = filepath.Join(dir, "ktransfer.yaml")
	if err := os.WriteFile(confPath, []byte("zk_chroot: /mq/c\nzk_hosts: [127.0.0.1:2181]\nbroker_hosts: [127.0.0.1:9092]\n"+
		"module_conf_dir: "+dir+"\nmodule_enabled: [m]\n"+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := ktransfer.LoadConfig(confPath)
	if err != nil {
		t.Fatalf("module %q: the file is valid and must load: %v", module, err)
	}
	return cfg, modulePath, confPath
}
