package daemon

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// TestStrayArgumentRefused: Go's flag parsing stops at the first word
// that is not a flag, so `-f FILE stray -check` ignored -check and started
// the service, and `kproxy_bin FILE` read the default file instead of
// FILE. Such an argument is refused with exit 2 before anything is loaded.
func TestStrayArgumentRefused(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "x.yaml")
	if err := os.WriteFile(file, []byte("x: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-f", file, "stray", "-check"}, {file}} {
		var loaded []string
		started := false
		p := Program[string]{
			Name: "test", DefaultFile: filepath.Join(dir, "default.yaml"),
			Load:    func(path string) (string, error) { loaded = append(loaded, path); return path, nil },
			Logging: func(string) (string, int) { return dir, 0 },
			New: func(context.Context, string, *slog.Logger) (Service, error) {
				started = true
				return nil, errors.New("not started in this test")
			},
			Started: func(*slog.Logger, Service, string) {},
		}
		if code := p.Main(args); code != 2 || started || len(loaded) != 0 {
			t.Errorf("%q: exit %d, service started %v, files loaded %q; want exit 2, nothing loaded or started", args, code, started, loaded)
		}
	}
}
