package ktransfer_test

import (
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestStopDuringReloadStartsNoModule attacks "a reload in progress ends
// ... and none starts any more" (the shutdown order in Run): a reload
// removes module h, whose push never ends (its hand-over takes
// shutdown_timeout_ms), and adds module n; the process is stopped while
// h is handing over. Once the hand-over ends, the reload must not start
// n: started after the stop, n registered under ids/ and claimed its
// partitions (owner nodes created, offset nodes rewritten) only to hand
// them over at once, and the other processes of n's group reassigned
// twice, pushing again what was uncommitted at each hand-over.
func TestStopDuringReloadStartsNoModule(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "h", Partitions: 1}, kafkatest.Topic{Name: "u", Partitions: 2})
	ok := newBackend(t, nil)
	unblock := make(chan struct{})
	var hanging atomic.Int64
	hang := newBackend(t, func(int, push, http.ResponseWriter) { hanging.Add(1); <-unblock })
	t.Cleanup(func() { close(unblock) }) // before the backend's Close, which waits for its requests
	c := e.reloadConf(t, "m", "h")
	c.shutdownMs = 5000 // the stop must come during h's hand-over: ample on a loaded machine
	c.enable(t, "", "m", "h")
	c.module(t, "m", "t", "m", ok.URL, "")
	c.module(t, "h", "h", "h", hang.URL, "")
	c.module(t, "n", "u", "n", ok.URL, "")
	var logs runtest.Log
	r := startConf(t, c, slog.New(slog.NewTextHandler(&logs, nil)))
	e.produce(t, "h", [][2]string{{"k", "1"}})
	waitFor(t, "h's push hanging", 20*time.Second, func() bool { return hanging.Load() >= 1 })

	c.enable(t, "", "m", "n")
	r.tr.RequestReload()
	waitFor(t, "h deregistered: the reload is handing it over", 10*time.Second, func() bool {
		ids, _, err := e.conn.Children(zklayout.ConsumerIDs(chroot, "h"))
		return err == nil && len(ids) == 0
	})
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !regexp.MustCompile(`msg="process stopping: the modules this reload added or changed are not started" modules=\[n\]`).MatchString(logs.String()) {
		t.Errorf("the reload did not say it left n unstarted:\n%s", logs.String())
	}
	if last := r.tr.ConfigStatus().LastReload; last == nil || !slices.Equal(last.NotStarted, []string{"n"}) ||
		len(last.Started) != 0 || len(last.Restarted) != 0 || !slices.Equal(last.Stopped, []string{"h"}) {
		t.Errorf("last_reload %+v, want n not started, h stopped, none started or restarted", last)
	}
	for _, what := range []string{"registered", `"partition claimed"`} {
		if regexp.MustCompile(`msg=` + what + ` module=n `).MatchString(logs.String()) {
			t.Errorf("module n, added by a reload the stop interrupted, %s after the stop began:\n%s", what, logs.String())
		}
	}
	if o := e.owners(t, "n", "u"); len(o) != 0 {
		t.Errorf("n's owner nodes left after the stop: %v", o)
	}
}
