package kproxy

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestReloadStoppedWhileItsFileHangs: a SIGHUP while kproxy.yaml sits on
// a mount that stops answering (an NFS hard mount, a FUSE or CSI secret
// store), then SIGTERM. The reload waited for the read for ever, and Run,
// which waits for the reload once it has shut down, with it: the process
// never exited. The reload now gives up at the stop, nothing applied;
// until then it says, every config.SlowRead, that it is still reading.
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
	defer func(d time.Duration) { config.SlowRead = d }(config.SlowRead)
	config.SlowRead = 100 * time.Millisecond
	var logs runtest.Log
	s := &Server{cfg: Config{file: "kproxy.yaml"}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx, stop := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() { got <- s.reloadWithin(ctx) }()
	<-read
	// Meanwhile every later reload waits for it: said, not silent.
	const said = "reload still reading its files"
	if !logs.WaitFor(said, 5*time.Second) {
		t.Errorf("a reload stuck reading its file logged nothing (want %q): %s", said, logs.String())
	}
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
