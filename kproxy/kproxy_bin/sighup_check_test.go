package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/bintest"
)

// TestSIGHUPDuringCheckIsNotFatal: the systemd units run -check before a
// start and before a reload, in the unit's cgroup, and the logrotate file
// sends SIGHUP to every process of the unit (systemctl kill -s HUP). A
// -check that gets it must finish its check, not die of it (failing the
// start or the reload). The check is held at its output here: its
// standard output is a full pipe.
func TestSIGHUPDuringCheckIsNotFatal(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	os.WriteFile(f, []byte(fmt.Sprintf("port: %d\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nbroker_hosts: [127.0.0.1:1]\n", freePort(t))), 0o644)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Fill the pipe, then make it blocking again for the process.
	fd := int(w.Fd())
	if err := syscall.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	filled := 0
	for {
		n, err := syscall.Write(fd, chunk)
		if err != nil {
			break
		}
		filled += n
	}
	if err := syscall.SetNonblock(fd, false); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary(t), "-f", f, "-check")
	cmd.Stdout = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	exited := bintest.Exited(t, cmd)
	deadline := time.Now().Add(bintest.StartWithin) // its start, then the check
	for !writingToFullPipe(cmd.Process.Pid) {
		select {
		case <-exited:
			t.Fatalf("-check ended before writing: %v", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("-check not blocked writing its output within %v", bintest.StartWithin)
		}
		time.Sleep(time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(r) // until the process closes its end
	<-exited
	if code := cmd.ProcessState.ExitCode(); code != 0 || !strings.HasSuffix(string(out[filled:]), f+": ok\n") {
		t.Fatalf("-check after a SIGHUP: %v, output %q; want exit 0 and %q", cmd.ProcessState, out[filled:], f+": ok")
	}
}

// writingToFullPipe reports whether a thread of process pid waits to write
// to a full pipe.
func writingToFullPipe(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
	for _, task := range tasks {
		if w, err := os.ReadFile(task); err == nil && strings.Contains(string(w), "pipe_write") {
			return true
		}
	}
	return false
}
