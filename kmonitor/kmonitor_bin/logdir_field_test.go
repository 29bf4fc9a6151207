package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
)

// TestBadLogDirNamesItsField: a log directory that cannot be made is
// refused (exit 2) by -check and by the start alike, naming the file and
// the field as kmonitor.yaml spells it, base.log_dir: there is no
// top-level log_dir in it (it was reported as log_dir, kproxy's and
// ktransfer's key).
func TestBadLogDirNamesItsField(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "afile")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "kmonitor.yaml")
	conf := "base:\n log_dir: " + file + "/log\n clusters: [c]\nc:\n chroot: /mq/c\n zk_hosts: [127.0.0.1:1]\n"
	if err := os.WriteFile(f, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := bintest.Build(t, ".")
	for _, args := range [][]string{{"-f", f, "-check"}, {"-f", f}} {
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		_ = cmd.Run()
		want := f + ": base.log_dir: "
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(stderr.String(), want) || !strings.Contains(stderr.String(), file+"/log") {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 with %q and the value", args, code, stderr.String(), want)
		}
	}
}
