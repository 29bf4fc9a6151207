package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// A key without effect (a cluster's kafka.tls.ca_file with
// insecure_skip_verify) is warned of at start; -check, which an operator
// runs before a deploy, must say it too, and still pass the file (exit 0):
// it loads as before.
func TestCheckSaysKeysWithoutEffect(t *testing.T) {
	ca := testcert.New(t).CAFile
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	doc := "base:\n clusters: [c]\nc:\n chroot: /mq/c\n zk_hosts: [h:1]\n" +
		" kafka:\n  tls:\n   enable: true\n   insecure_skip_verify: true\n   ca_file: " + ca + "\n"
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bintest.Build(t, "."), "-f", f, "-check")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d (%v), want 0: %s", code, err, out)
	}
	for _, want := range []string{f + ": c.kafka.tls.ca_file: " + ca + " has no effect: insecure_skip_verify is true", f + ": ok"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("-check output %q lacks %q", out, want)
		}
	}
}
