package ktransfer_test

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestReloadStoppedByShutdownIsNotRefused: a SIGTERM during a reload stops
// it at its next step (README). A reload adding a module was waiting for
// the new topic's metadata when the stop came: it was logged as refused
// ("configuration reload refused; the running configuration is kept",
// problem "context canceled"), counted as refused, shown as refused in
// /status and set ktransfer_config_last_reload_ok to 0, as if the files
// were wrong. The files are fine: the reload was stopped, not refused.
func TestReloadStoppedByShutdownIsNotRefused(t *testing.T) {
	var logs runtest.Log
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "u", Partitions: 1})
	bk := newBackend(t, nil)
	c := e.reloadConf(t, "m")
	c.module(t, "m", "t", "m", bk.URL, "")
	r := startConf(t, c, slog.New(slog.NewTextHandler(&logs, nil)))
	waitFor(t, "the partition owned", 20*time.Second, func() bool { return len(e.owners(t, "m", "t")) == 1 })

	// Kafka's metadata answers are held: the reload waits for the new
	// module's topic.
	silence := make(chan struct{})
	var held atomic.Int64
	e.kafka.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		held.Add(1)
		e.kafka.SleepControl(func() { <-silence })
		return nil, nil, false
	})
	released := false
	release := func() {
		if !released {
			released = true
			close(silence)
		}
	}
	t.Cleanup(release)
	c.module(t, "n", "u", "n", bk.URL, "")
	c.enable(t, "", "m", "n")
	r.tr.RequestReload()
	waitFor(t, "a metadata request held", 10*time.Second, func() bool { return held.Load() > 0 })

	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		release()
		t.Fatalf("Run still running 15 s after the stop; log:\n%s", logs.String())
	}
	release()
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "refused") {
			t.Errorf("a reload stopped by the shutdown logged %q", line)
		}
	}
	if last := r.tr.ConfigStatus().LastReload; last != nil && last.Result == "refused" {
		t.Errorf("/status's last_reload: refused (%s)", last.Error)
	}
	if ok := ktransfer.ReloadOK(r.tr); ok != 1 {
		t.Errorf("ktransfer_config_last_reload_ok %v after a reload stopped by the shutdown, want 1", ok)
	}
}
