package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A SIGTERM while the configuration is read (the file, a module file, a
// secret on a mount that does not answer) stops the start at once, exit 0,
// as one while the log is opened does: it was caught and then held until
// the read returned, and systemd killed the process at TimeoutStopSec.
func TestSIGTERMWhileReadingTheConfigStops(t *testing.T) {
	dir := t.TempDir()
	loading, proceed := make(chan struct{}), make(chan struct{})
	defer close(proceed)
	p := Program[string]{
		Name: "test", DefaultFile: filepath.Join(dir, "test.yaml"),
		Load: func(path string) (string, error) {
			close(loading)
			<-proceed // a read that does not return
			return path, nil
		},
		Logging: func(string) (string, int) { return dir, 6 },
		New: func(context.Context, string, *slog.Logger) (Service, error) {
			t.Error("the service was built after a SIGTERM during the start")
			return nil, context.Canceled
		},
		Started: func(*slog.Logger, Service, string) {},
	}
	exit := make(chan int, 1)
	go func() { exit <- p.Main(nil) }()
	select {
	case <-loading:
	case <-time.After(10 * time.Second):
		t.Fatal("the configuration was not read within 10 s")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d after a SIGTERM during the start, want 0", code)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Main did not return within 2 s of a SIGTERM while the configuration was read")
	}
}
