package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckRefusesLogDirTheStartRefuses: -check is what the systemd
// unit runs before a restart (ExecStartPre) "so a bad edit is refused before
// the running process is stopped" (README). A log_dir the start cannot
// create (here: below a regular file) stopped the start (exit 1, "log_dir:
// …"), while -check said "ok", exit 0. Both now refuse it as a bad
// configuration: exit 2, naming the file, log_dir and its value.
func TestCheckRefusesLogDirTheStartRefuses(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "not-a-dir")
	if err := os.WriteFile(blocker, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(blocker, "log")
	f := filepath.Join(dir, "kproxy.yaml")
	if err := os.WriteFile(f, []byte("log_dir: "+logDir+"\nport: 5030\nadmin_addr: \"\"\nbroker_hosts: [127.0.0.1:1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := exec.Command(binary(t), "-f", f)
	startOut, _ := start.CombinedOutput()
	check := exec.Command(binary(t), "-f", f, "-check")
	checkOut, _ := check.CombinedOutput()
	t.Logf("start: exit %d, %q", start.ProcessState.ExitCode(), startOut)
	t.Logf("-check: exit %d, %q", check.ProcessState.ExitCode(), checkOut)
	prefix, suffix := f+": log_dir: ", "not a directory, got \""+logDir+"\""
	for _, run := range []struct {
		name string
		cmd  *exec.Cmd
		out  []byte
	}{{"the start", start, startOut}, {"-check", check, checkOut}} {
		out := strings.TrimSpace(string(run.out))
		if code := run.cmd.ProcessState.ExitCode(); code != 2 || !strings.HasPrefix(out, prefix) || !strings.HasSuffix(out, suffix) {
			t.Errorf("%s with a log_dir below a regular file: exit %d, output %q; want exit 2, %q … %q", run.name, code, run.out, prefix, suffix)
		}
	}
}
