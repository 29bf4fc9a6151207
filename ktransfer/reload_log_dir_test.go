package ktransfer_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestReloadRefusesALogDirTheStartRefuses: a reload of a file whose
// log_dir the start (and -check) refuse, a directory below a regular
// file, applies nothing of the file, here a second module: before, it
// started the module and said only that log_dir needs a restart, and the
// next restart failed.
func TestReloadRefusesALogDirTheStartRefuses(t *testing.T) {
	var logs runtest.Log
	e, bk, c, r := startModuleM(t, 2, &logs)
	waitFor(t, "both partitions", 20*time.Second, func() bool { return len(e.owners(t, "m", "t")) == 2 })
	plain := filepath.Join(t.TempDir(), "plainfile")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.enable(t, "log_dir: "+plain+"/log\n", "m", "m2")
	c.module(t, "m2", "t", "m2", bk.URL, "")
	err := r.tr.Reload(context.Background())
	if want := c.path + ": log_dir: "; err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), plain+"/log") {
		t.Fatalf("reload with log_dir below a regular file: %v, want a refusal with %q and the value", err, want)
	}
	if n := len(r.tr.Status()); n != 1 {
		t.Errorf("%d modules running after the refused reload, want the 1 running before", n)
	}
}
