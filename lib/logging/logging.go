// Package logging builds the suite's slog logger from the documented
// log_level and log_dir settings.
//
// log_level is the 2015 suite's bit set: 0 none, 1 fatal, 2 +warning,
// 4 +notice, 8 +trace, 16 +debug. The highest bit set decides how much is
// written: 1 → errors, 2 → warnings, 4 → info (lifecycle), 8 → debug (per
// message), 16 → everything, including the Kafka client's own log.
package logging

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
)

// LevelVerbose is below slog's Debug: the Kafka client library's chatter.
const LevelVerbose = slog.LevelDebug - 4

// MaxLevel is the largest accepted log_level.
const MaxLevel = 31

// Level converts a log_level setting to the lowest slog level written, and
// reports false when nothing is written at all.
func Level(logLevel int) (slog.Level, bool) {
	switch {
	case logLevel >= 16:
		return LevelVerbose, true
	case logLevel >= 8:
		return slog.LevelDebug, true
	case logLevel >= 4:
		return slog.LevelInfo, true
	case logLevel >= 2:
		return slog.LevelWarn, true
	case logLevel >= 1:
		return slog.LevelError, true
	default:
		return 0, false
	}
}

// Logger is a slog.Logger writing to a file that can be reopened after an
// external rotation (logrotate's rename + SIGHUP), or to standard error.
type Logger struct {
	*slog.Logger
	out   *File
	level *slog.LevelVar // nil when log_level was 0 at start: nothing is written
}

// CheckDir tells whether New can keep its log, <name>.log, in dir at
// logLevel: the file there is one this process may write to, or dir is
// (or can be made) a directory it may create the file in. A log_dir under
// a regular file, a directory it may not write to without the file, a
// file it may not write to stop the start: -check says so too. A log
// directory an operator owns, holding a file made for the service (as
// logrotate's create does), needs no write access to the directory.
func CheckDir(dir string, logLevel int, name string) error {
	if _, on := Level(logLevel); !on || dir == "" {
		return nil
	}
	file := filepath.Join(dir, name+".log")
	if fi, err := os.Stat(file); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory", file)
		}
		if err := unix.Access(file, unix.W_OK); err != nil {
			return fmt.Errorf("log file %s is not writable: %w", file, err)
		}
		return nil
	}
	if err := config.WritableDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// CheckFileDir is CheckDir as a problem of the configuration file file,
// whose key (log_dir) names dir: the file, the key and the value, as the
// start and -check say it, and as a reload refuses such a file.
func CheckFileDir(file, key, dir string, logLevel int, name string) error {
	if err := CheckDir(dir, logLevel, name); err != nil {
		return fmt.Errorf("%s: %s: %v, got %q", file, key, err, dir)
	}
	return nil
}

// New builds the logger of the binary called name. With dir empty it writes
// to standard error; otherwise to <dir>/<name>.log, created if needed.
func New(dir string, logLevel int, name string) (*Logger, error) {
	level, on := Level(logLevel)
	if !on {
		return &Logger{Logger: slog.New(slog.DiscardHandler)}, nil
	}
	var w io.Writer = os.Stderr
	var f *File
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create log_dir: %w", err)
		}
		var err error
		f, err = OpenFile(filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, err
		}
		w = f
	}
	lv := new(slog.LevelVar)
	lv.Set(level)
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv, ReplaceAttr: levelNames})
	return &Logger{Logger: slog.New(h), out: f, level: lv}, nil
}

// SetLevel applies a new log_level to the running logger (0 silences it).
// It reports false when the logger was built with log_level 0: it has no
// file or handler to write to, and only a restart gives it one.
func (l *Logger) SetLevel(logLevel int) bool {
	if l.level == nil {
		return logLevel == 0
	}
	level, on := Level(logLevel)
	if !on {
		level = slog.LevelError + 1 // above everything written
	}
	l.level.Set(level)
	return true
}

// Reopen reopens the log file, if there is one; call it on SIGHUP.
func (l *Logger) Reopen() error {
	if l.out == nil {
		return nil
	}
	return l.out.Reopen()
}

// Close closes the log file, if there is one.
func (l *Logger) Close() error {
	if l.out == nil {
		return nil
	}
	return l.out.Close()
}

func levelNames(groups []string, a slog.Attr) slog.Attr {
	if a.Key == slog.LevelKey && len(groups) == 0 {
		if lv, ok := a.Value.Any().(slog.Level); ok && lv <= LevelVerbose {
			a.Value = slog.StringValue("VERBOSE")
		}
	}
	return a
}

// File is an append-only log file that can be reopened by path.
type File struct {
	path   string
	mu     sync.Mutex
	f      *os.File
	closed bool // Close ran: a reopen that ends later closes what it opened
}

// OpenFile opens path for appending.
func OpenFile(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return &File{path: path, f: f}, nil
}

func (f *File) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f.Write(p)
}

// Reopen closes the file and opens path again, so that writes go to a new
// file after the old one was renamed away; its directory is made again
// when it was removed (a clean-up job, space freed by hand): the process
// wrote on into the deleted file until a restart, its lines lost and its
// space held.
func (f *File) Reopen() error {
	if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
		return fmt.Errorf("reopen log file: create its directory: %w", err)
	}
	nf, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("reopen log file: %w", err)
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nf.Close()
	}
	old := f.f
	f.f = nf
	f.mu.Unlock()
	return old.Close()
}

// Close closes the file.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return f.f.Close()
}

// ReopenOn reopens the log file each time a value arrives on sig (wire it
// to SIGHUP for logrotate), and then calls then (when not nil), until done
// is closed.
func (l *Logger) ReopenOn(sig <-chan os.Signal, done <-chan struct{}, then func()) {
	for {
		select {
		case <-sig:
			if err := l.Reopen(); err != nil {
				// The file written to may be a deleted one: said on
				// standard error too (the service manager's journal).
				l.Error("reopen log file", "err", err)
				fmt.Fprintf(os.Stderr, "%s reopen log file: %v\n", time.Now().Format(time.RFC3339), err)
			}
			if then != nil {
				then()
			}
		case <-done:
			return
		}
	}
}
