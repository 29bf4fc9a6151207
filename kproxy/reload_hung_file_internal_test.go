package kproxy

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

// TestReloadStoppedWhileItsFileHangs: a SIGHUP while kproxy.yaml sits on
// a mount that stops answering (an NFS hard mount, a FUSE or CSI secret
// store), then SIGTERM. The reload waited for the read for ever, and Run,
// which waits for the reload once it has shut down, with it: the process
// never exited. The reload now gives up at the stop, nothing applied.
func TestReloadStoppedWhileItsFileHangs(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	read := make(chan struct{})
	loadConfig = func(string) (Config, error) {
		close(read)
		<-hang // the mount never answers (within the test)
		return Config{}, errors.New("hung")
	}
	t.Cleanup(func() { loadConfig = LoadConfig })
	s := &Server{cfg: Config{file: "kproxy.yaml"}, log: slog.New(slog.DiscardHandler)}
	ctx, stop := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() { got <- s.reloadWithin(ctx) }()
	<-read
	stop() // SIGTERM
	select {
	case err := <-got:
		if !errors.Is(err, errReloadStopped) {
			t.Fatalf("reload stopped while reading its file: %v, want %v", err, errReloadStopped)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the reload still waits for its file 2 s after the stop: Run waits for it, and the process never exits")
	}
}
