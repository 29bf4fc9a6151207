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

// TestCheckLogDirAsTheStartOpensTheLog: -check judges log_dir as the start
// opens the log, kproxy.log for appending, created when missing. Run as
// an ordinary user (in a user namespace of its own, owning the files),
// for whom the modes hold: a directory it may not write to, holding a
// kproxy.log it may (a log directory an operator owns, the file made for
// the service by logrotate's create), loads (-check: ok); a writable
// directory holding a kproxy.log it may not write to (left by a run as
// another user) is refused, exit 2, naming the file.
func TestCheckLogDirAsTheStartOpensTheLog(t *testing.T) {
	for _, tc := range []struct {
		name             string
		dirMode, logMode os.FileMode
		wantCode         int
	}{
		{"read-only directory, writable kproxy.log", 0o555, 0o644, 0},
		{"writable directory, read-only kproxy.log", 0o755, 0o444, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logDir := filepath.Join(t.TempDir(), "log")
			if err := os.Mkdir(logDir, 0o755); err != nil {
				t.Fatal(err)
			}
			logFile := filepath.Join(logDir, "kproxy.log")
			if err := os.WriteFile(logFile, nil, tc.logMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(logDir, tc.dirMode); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(logDir, 0o755) })
			f := filepath.Join(t.TempDir(), "kproxy.yaml")
			if err := os.WriteFile(f, []byte("log_dir: "+logDir+"\nport: 5030\nbroker_hosts: [a:1]\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(binary(t), "-f", f, "-check")
			asOrdinaryUser(cmd)
			out, _ := cmd.CombinedOutput()
			code := cmd.ProcessState.ExitCode()
			if code != tc.wantCode || code == 2 && !strings.Contains(string(out), f+": log_dir: log file "+logFile+" is not writable") {
				t.Errorf("-check: exit %d, %q; want exit %d", code, out, tc.wantCode)
			}
		})
	}
}
