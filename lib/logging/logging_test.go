package logging

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLevel(t *testing.T) {
	for _, tc := range []struct {
		in   int
		want slog.Level
		on   bool
	}{
		{0, 0, false}, {1, slog.LevelError, true}, {2, slog.LevelWarn, true}, {3, slog.LevelWarn, true},
		{4, slog.LevelInfo, true}, {6, slog.LevelInfo, true}, {8, slog.LevelDebug, true},
		{16, LevelVerbose, true}, {31, LevelVerbose, true},
	} {
		got, on := Level(tc.in)
		if on != tc.on || (on && got != tc.want) {
			t.Errorf("Level(%d) = %v %v, want %v %v", tc.in, got, on, tc.want, tc.on)
		}
	}
}

func TestFileAndReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	l, err := New(dir, 4, "kproxy")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Info("first", "k", 1)
	l.Debug("hidden at level 4")
	path := filepath.Join(dir, "kproxy.log")
	if err := os.Rename(path, path+".1"); err != nil { // as logrotate does
		t.Fatal(err)
	}
	l.Info("still to the old file")
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Warn("second")
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "msg=first k=1") || !strings.Contains(string(old), "still to the old file") ||
		strings.Contains(string(old), "hidden") {
		t.Errorf("rotated file: %s", old)
	}
	if !strings.Contains(string(cur), "level=WARN msg=second") || strings.Contains(string(cur), "first") {
		t.Errorf("new file: %s", cur)
	}
}

func TestLevelZeroWritesNothing(t *testing.T) {
	dir := t.TempDir()
	l, err := New(dir, 0, "x")
	if err != nil {
		t.Fatal(err)
	}
	l.Error("nothing")
	if _, err := os.Stat(filepath.Join(dir, "x.log")); err == nil {
		t.Errorf("log file created at log_level 0")
	}
}

// TestSetLevel: a reload's new log_level applies to the running logger;
// 0 silences it; a logger built with 0 has nowhere to write and says so.
func TestSetLevel(t *testing.T) {
	dir := t.TempDir()
	l, err := New(dir, 2, "ktransfer")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Info("hidden at level 2")
	if !l.SetLevel(8) {
		t.Fatal("SetLevel(8) refused")
	}
	l.Debug("shown at level 8")
	if !l.SetLevel(0) {
		t.Fatal("SetLevel(0) refused")
	}
	l.Error("hidden at level 0")
	data, _ := os.ReadFile(filepath.Join(dir, "ktransfer.log"))
	if s := string(data); strings.Contains(s, "hidden") || !strings.Contains(s, "shown at level 8") {
		t.Errorf("log:\n%s", s)
	}
	off, err := New(dir, 0, "off")
	if err != nil {
		t.Fatal(err)
	}
	if off.SetLevel(4) || !off.SetLevel(0) {
		t.Error("a logger built with log_level 0 must refuse a level that writes, and accept 0")
	}
}

// The log directory removed (a clean-up job, space freed by hand) and the
// process told to reopen its log: the reopen failed, and every line after
// went into the deleted file, lost, until a restart.
func TestReopenAfterLogDirRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "log")
	l, err := New(dir, 4, "kproxy")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Info("before")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatalf("reopen after the log directory was removed: %v", err)
	}
	l.Info("after")
	if b, _ := os.ReadFile(filepath.Join(dir, "kproxy.log")); !strings.Contains(string(b), "msg=after") {
		t.Errorf("the log after the reopen: %q, want the line written after it", b)
	}
}
