package bintest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOutputReadWhileWritten: a test printing a process's standard error
// while the process still writes it (a failure message) is no data race
// (under -race: os/exec copies into the Output from its own goroutine).
func TestOutputReadWhileWritten(t *testing.T) {
	cmd, stderr := Start(t, "sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line >&2; i=$((i+1)); done")
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(stderr.String(), "line\n") < 2000 {
		if time.Now().After(deadline) {
			t.Fatalf("read %d lines of 2000 in 10 s", strings.Count(stderr.String(), "line\n"))
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestFreePortsBelowEphemeralRange: the ports are consecutive, free, and
// below 32768, where the kernel picks no port for a connection.
func TestFreePortsBelowEphemeralRange(t *testing.T) {
	first := FreePorts(t, 3)
	if first < 1024 || first+2 >= 32768 {
		t.Fatalf("ports %d-%d, want them within 1024-32767", first, first+2)
	}
	for p := first; p < first+3; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d of %d-%d: %v", p, first, first+2, err)
		}
		l.Close()
	}
}

// child runs this test binary again as a process of its own running only
// the test named, with BINTEST_CHILD set, and returns what it printed.
func child(t *testing.T, name string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BINTEST_CHILD=1")
	out, _ := cmd.CombinedOutput() // it ends as a timed-out test does, without its cleanups
	return string(out)
}

// A test process that built binaries and ended, even without its
// cleanups (a test timed out), does not leave them behind for good: the
// next one that builds removes them. Every run of the suite would add a
// directory of binaries to the machine's temporary directory.
func TestBuildLeavesNoBinariesOfEndedProcesses(t *testing.T) {
	if os.Getenv("BINTEST_CHILD") != "" {
		fmt.Printf("built=%s\n", Build(t, "testdata/hello"))
		os.Exit(3)
	}
	out := child(t, t.Name())
	_, bin, ok := strings.Cut(out, "built=")
	if !ok {
		t.Fatalf("the child built nothing: %s", out)
	}
	bin = strings.TrimSpace(strings.SplitN(bin, "\n", 2)[0])
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the child's binary %s: %v", bin, err)
	}
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(bin)) })
	Build(t, "testdata/hello")
	if _, err := os.Stat(filepath.Dir(bin)); !os.IsNotExist(err) {
		t.Errorf("the binaries of a test process that ended are still in %s (%v)", filepath.Dir(bin), err)
	}
}

// A process a test started ends when the test process does, even without
// its cleanups (a test timed out): a daemon left running holds its port
// and its files on the machine.
func TestStartedProcessEndsWithTheTestProcess(t *testing.T) {
	if os.Getenv("BINTEST_CHILD") != "" {
		cmd, _ := Start(t, "sleep", "60")
		fmt.Printf("pid=%d\n", cmd.Process.Pid)
		os.Exit(3)
	}
	out := child(t, t.Name())
	_, s, ok := strings.Cut(out, "pid=")
	if !ok {
		t.Fatalf("the child started nothing: %s", out)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(s, "\n", 2)[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); running(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d started by a test still runs 10 s after the test process ended", pid)
		}
	}
}

// running reports whether process pid runs (a zombie no longer does).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}
