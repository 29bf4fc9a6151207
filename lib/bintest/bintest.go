// Package bintest helps tests run the project's binaries as processes.
package bintest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

var (
	mu    sync.Mutex
	built = map[string]string{}
	dir   string
)

// Output collects what a process writes; it may be read while the
// process still writes (os/exec copies into it from a goroutine of its
// own).
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// String returns what was written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// Start runs the binary with args, its standard error collected in the
// returned Output, and kills and reaps it at cleanup if it is still
// running (a test that waited for it already is not disturbed).
func Start(t testing.TB, bin string, args ...string) (*exec.Cmd, *Output) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr := &Output{}
	cmd.Stderr = stderr
	// The process dies with the test process, even when that ends
	// without its cleanups (a test timed out).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, stderr
}

// Build compiles the main package in pkgDir (relative to the test's
// working directory, "." for the package under test) once per test
// process and returns the binary's path.
func Build(t testing.TB, pkgDir string) string {
	t.Helper()
	abs, err := filepath.Abs(pkgDir)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if bin, ok := built[abs]; ok {
		return bin
	}
	if dir == "" {
		removeEnded()
		if dir, err = os.MkdirTemp("", fmt.Sprintf("bintest-%d-", os.Getpid())); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, filepath.Base(abs))
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = abs
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v", fmt.Errorf("go build %s: %v\n%s", pkgDir, err, out))
	}
	built[abs] = bin
	return bin
}

// removeEnded removes the binaries built by test processes that ended:
// a test process has no moment to remove its own after its last test (and
// none at all when a test times out), so each removes those left by the
// ones before it. Their directories are named after their pid.
func removeEnded() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "bintest-*-*"))
	for _, d := range dirs {
		pid, err := strconv.Atoi(strings.Split(filepath.Base(d), "-")[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// FreePorts returns the first of n consecutive loopback ports that are
// free now, for a process the test starts to listen on. They are taken
// below Linux's ephemeral range (32768-60999): a port the kernel hands to a
// connection of another test running meanwhile (one given by listening on
// port 0, then closed, is one of those) would be taken before the process
// binds it.
func FreePorts(t testing.TB, n int) int {
	t.Helper()
	for range 200 {
		first := 20000 + rand.IntN(12000-n)
		var held []net.Listener
		for i := range n {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(first+i)))
			if err != nil {
				break
			}
			held = append(held, l)
		}
		for _, l := range held {
			l.Close()
		}
		if len(held) == n {
			return first
		}
	}
	t.Fatalf("no %d consecutive free ports", n)
	return 0
}

// FreePort returns a loopback port free now (FreePorts).
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)
}
