package ktransfer_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestReloadExplicitDefaultsLeaveModuleAlone: a module file that comes to
// write out what it meant already — serialize_by_key: true (the default),
// methods, protocol.headers and protocol.signing_secrets as empty lists
// (none, as when left out) —
// configures the same module: a reload must not restart it (a restart
// hands its partitions over and pushes what was in flight again), as it
// does not when breaker_cooldown_ms: 1000, another default, is written.
func TestReloadExplicitDefaultsLeaveModuleAlone(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	c.module(t, "m", "t", "m", bk.URL, "")
	r := startConf(t, c, nil)
	waitFor(t, "the module's partition claimed", 10*time.Second, func() bool { return len(e.ownerEpochs(t, "m", "t")) == 1 })
	for _, extra := range []string{
		"breaker_cooldown_ms: 1000\n",
		"serialize_by_key: true\n",
		"methods: []\n",
		"protocol.headers: []",
		"protocol.signing_secrets: []",
	} {
		c.module(t, "m", "t", "m", bk.URL, "")
		if err := r.tr.Reload(context.Background()); err != nil {
			t.Fatalf("reload of the first file: %v", err)
		}
		if key, ok := strings.CutPrefix(extra, "protocol."); ok {
			writeModule(t, c, "m", strings.Replace(moduleFile(t, c, "m"), "protocol:\n", "protocol:\n "+key+"\n", 1))
		} else {
			c.module(t, "m", "t", "m", bk.URL, extra)
		}
		if err := r.tr.Reload(context.Background()); err != nil {
			t.Fatalf("reload with %q: %v", extra, err)
		}
		if last := r.tr.ConfigStatus().LastReload; len(last.Restarted) != 0 {
			t.Errorf("reload adding %q restarted %v; want the module left alone", extra, last.Restarted)
		}
	}
}

func moduleFile(t *testing.T, c confDir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(c.dir, "modules", name+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeModule(t *testing.T, c confDir, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(c.dir, "modules", name+".yaml"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
