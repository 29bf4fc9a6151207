// Package bintest helps tests run the project's binaries as processes.
package bintest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
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
		if dir, err = os.MkdirTemp("", "bintest"); err != nil {
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
