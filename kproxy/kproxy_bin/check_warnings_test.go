package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A key without effect (spool_after_ms without spool_dir) is warned of at
// start; -check, which an operator runs before a deploy, must say it too,
// and still pass the file (exit 0): it loads as before.
func TestCheckSaysKeysWithoutEffect(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	if err := os.WriteFile(f, []byte("port: 5030\nbroker_hosts: [a:1]\nspool_after_ms: 300\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), "-f", f, "-check")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d (%v), want 0: %s", code, err, out)
	}
	for _, want := range []string{f + ": spool_after_ms: 300 has no effect: spool_dir is not set", f + ": ok"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("-check output %q lacks %q", out, want)
		}
	}
}
