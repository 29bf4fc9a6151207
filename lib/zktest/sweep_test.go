package zktest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestSweepRemovesDeadBinariesDirectories: the directory of a server
// started ahead for a Start that never came is removed by the next test
// binary once its own is gone, and a live binary's is left alone.
func TestSweepRemovesDeadBinariesDirectories(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead, err := os.MkdirTemp("", fmt.Sprintf("zktest-%d-", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dead) })
	if err := os.WriteFile(filepath.Join(dead, "zoo.cfg"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	live, err := os.MkdirTemp("", fmt.Sprintf("zktest-%d-", os.Getppid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(live) })
	own, err := os.MkdirTemp("", fmt.Sprintf("zktest-%d-", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(own) })
	sweep()
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("directory of an exited test binary kept: %s (%v)", dead, err)
	}
	for _, d := range []string{live, own} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("directory of a running process removed: %s (%v)", d, err)
		}
	}
}
