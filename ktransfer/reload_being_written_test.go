package ktransfer_test

import (
	"context"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestReloadOfAFileBeingWritten: a watcher of ktransfer.yaml sends SIGHUP
// when an in-place write has truncated it and written part of it. The
// reload applied the part there at the signal: here the file is cut before
// module n in module_enabled when the reload starts, and written whole
// (n still enabled) 50 ms later. n was stopped, its partitions handed
// over, until the next reload.
func TestReloadOfAFileBeingWritten(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "u", Partitions: 1})
	ok := newBackend(t, nil)
	c := e.reloadConf(t, "m", "n")
	c.module(t, "m", "t", "m", ok.URL, "")
	c.module(t, "n", "u", "n", ok.URL, "")
	r := startConf(t, c, nil)
	waitFor(t, "n registered", 20*time.Second, func() bool {
		ids, _, err := e.conn.Children(zklayout.ConsumerIDs(chroot, "n"))
		return err == nil && len(ids) == 1
	})
	c.enable(t, "", "m")
	done := make(chan error, 1)
	go func() { done <- r.tr.Reload(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	c.enable(t, "", "m", "n")
	if err := <-done; err != nil {
		t.Fatalf("reload of a file written whole 50 ms after the signal: %v", err)
	}
	if last := r.tr.ConfigStatus().LastReload; last == nil || len(last.Stopped) != 0 || len(last.Started) != 0 {
		t.Errorf("last_reload %+v: want nothing stopped or started (the file as written enables m and n, as before)", last)
	}
}
