package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCheckRefusesSpoolDirThatCannotBeCreated attacks -check's promise
// (it finds what would stop the start): a spool_dir that does not exist is
// fine, the start creates it — unless its parent refuses that. -check
// passed such a file ("ok", exit 0) and the start then failed on it. Run
// as an ordinary user (in a user namespace of its own), for whom a
// read-only parent is read-only.
func TestCheckRefusesSpoolDirThatCannotBeCreated(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(parent, 0o555); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "spool")
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	if err := os.WriteFile(f, []byte("port: 5030\nbroker_hosts: [a:1]\nspool_dir: "+dir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), "-f", f, "-check")
	asOrdinaryUser(cmd)
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Fatalf("-check with spool_dir %s under a read-only directory: exit %d (%v), want 2; output %q", dir, code, err, out)
	}
	if want := f + ": spool_dir: "; !strings.Contains(string(out), want) || !strings.Contains(string(out), parent) {
		t.Errorf("-check output %q lacks %q naming %s", out, want, parent)
	}
}

// asOrdinaryUser runs cmd as an ordinary user (uid 1000 in a user
// namespace of its own, owning what this process owns), for whom file
// modes hold: root's access(2) passes them.
func asOrdinaryUser(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 1000, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 1000, HostID: os.Getgid(), Size: 1}},
	}
}
