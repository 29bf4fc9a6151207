package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
)

// A module key without effect (breaker_cooldown_ms with breaker_failures
// 0) is warned of when the module starts; -check, which an operator runs
// before a deploy, must say it too, and still pass the files (exit 0).
func TestCheckSaysKeysWithoutEffect(t *testing.T) {
	dir := t.TempDir()
	mods := filepath.Join(dir, "modules")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		t.Fatal(err)
	}
	module := filepath.Join(mods, "m.yaml")
	if err := os.WriteFile(module, []byte("topic: t\nprotocol:\n name: http\n uri: /p\nbackend_servers: [127.0.0.1:80]\nbreaker_cooldown_ms: 5000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "ktransfer.yaml")
	if err := os.WriteFile(conf, []byte("log_dir: "+filepath.Join(dir, "log")+"\nzk_chroot: /mq/c\nzk_hosts: [127.0.0.1:2181]\n"+
		"module_conf_dir: "+mods+"\nmodule_enabled: [m]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bintest.Build(t, "."), "-f", conf, "-check")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d (%v), want 0: %s", code, err, out)
	}
	for _, want := range []string{module + ": breaker_cooldown_ms: 5000 has no effect: breaker_failures is 0", conf + ": ok"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("-check output %q lacks %q", out, want)
		}
	}
}
