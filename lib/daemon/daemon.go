// Package daemon is the main function the three binaries share: the -f and
// -check flags, loading and checking the configuration, the logger, signals
// (SIGTERM/SIGINT stop, SIGHUP reopens the log file), and running the
// service until it stops.
package daemon

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/logging"
)

// Service is what a binary runs.
type Service interface {
	Run(ctx context.Context) error
	Close() error
}

// Reloader is a Service that reads its configuration again on SIGHUP.
type Reloader interface {
	// RequestReload asks for a reload and returns at once: the service
	// reloads in Run, one reload at a time.
	RequestReload()
	// SetLevelFunc gives the service the way to apply a new log_level to
	// the log; set reports false when the change needs a restart. Called
	// before Run.
	SetLevelFunc(set func(logLevel int) bool)
}

// Program describes one binary.
type Program[C any] struct {
	Name        string // "kproxy": the log file is <log_dir>/kproxy.log
	DefaultFile string // the -f default
	Load        func(path string) (C, error)
	// Logging returns the configuration's log_dir and log_level.
	Logging func(C) (dir string, level int)
	// LogDirKey is the log directory's key as the file spells it, which
	// a refusal of it names; "" is log_dir.
	LogDirKey string
	// New builds the service; ctx ends with a SIGTERM or SIGINT during
	// start-up, which a New that waits (for ZooKeeper) should heed.
	New func(context.Context, C, *slog.Logger) (Service, error)
	// Started logs the start-up line (addresses, modules, …).
	Started func(*slog.Logger, Service, C)
	// LogWith are attributes every line of the log carries (ktransfer's
	// pid: processes of a fleet on one host may write one log file).
	LogWith []any
	// Warnings, when set, returns what the start warns of in the
	// configuration, keys without effect: "FILE: key: value has no
	// effect: reason". -check prints them before its "ok".
	Warnings func(C) []string
}

// sameStop: a second SIGTERM or SIGINT this soon after the first is the
// same stop (one operator's request sent twice by the tools between),
// not a request to end the stop at once.
const sameStop = time.Second

// Main runs the program with the command-line arguments and returns the
// exit code: 0 after a clean stop, 1 when it failed, 2 for bad usage or a
// bad configuration (its problems are printed one per line).
func (p Program[C]) Main(args []string) int {
	fs := flag.NewFlagSet(p.Name+"_bin", flag.ContinueOnError)
	file := fs.String("f", p.DefaultFile, "configuration file")
	check := fs.Bool("check", false, "validate the configuration and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		// The flags end at the first other word: a -check after it would
		// be ignored (the service started), and a file named without -f
		// would not be read.
		fmt.Fprintf(os.Stderr, "%s_bin: unexpected argument %q (flags go before it; the file is -f FILE)\n", p.Name, fs.Arg(0))
		return 2
	}
	ctx := context.Background()
	var logOpen atomic.Pointer[logging.Logger] // the log, once open
	hup := make(chan os.Signal, 1)
	// -check too: the units run it in the service's group of processes,
	// to which logrotate's SIGHUP goes (systemctl kill -s HUP).
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if !*check {
		// The signals are caught before anything is read: a SIGHUP
		// during start-up (logrotate's, or a reload sent right after a
		// restart) would otherwise end the process (SIGHUP's default
		// action). One that comes before the service runs is kept and
		// acted on once it runs, as any later one: the log is reopened
		// and a Reloader reads its configuration again. A SIGTERM or
		// SIGINT stops the start.
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		// A second SIGTERM or SIGINT ends a stop that takes long (requests
		// waiting for Kafka up to shutdown_timeout_ms, ktransfer's pushes
		// and its commits to a ZooKeeper that does not answer) at once, as
		// an operator who sends it means: as a SIGKILL would, without
		// the wait for it. One within sameStop of the first is the same
		// stop asked twice, not an operator's: systemd sends its
		// KillSignal right after an ExecStop=kill returns, GNU timeout
		// signals the process and then its process group.
		stops := make(chan os.Signal, 2)
		signal.Notify(stops, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(stops)
		go func() {
			<-stops
			first := time.Now()
			for range stops {
				if time.Since(first) >= sameStop {
					break
				}
			}
			if l := logOpen.Load(); l != nil {
				l.Error("second stop signal: exiting before the stop finished (what was in flight is left as after a kill)")
			}
			fmt.Fprintf(os.Stderr, "%s_bin: second stop signal: exiting before the stop finished\n", p.Name)
			os.Exit(1)
		}()
	}
	// Reading the configuration can block as the log's open can (below):
	// the file, a module file, a secret or TLS file on a mount that does
	// not answer. A stop then ends the start; the read left behind ends
	// with the process.
	type loaded struct {
		cfg C
		err error
	}
	read := make(chan loaded, 1)
	dirKey := cmp.Or(p.LogDirKey, "log_dir")
	go func() {
		cfg, err := p.Load(*file)
		if err == nil {
			// A bad configuration (exit 2), told by -check as by the start.
			dir, level := p.Logging(cfg)
			err = logging.CheckFileDir(*file, dirKey, dir, level, p.Name)
		}
		read <- loaded{cfg, err}
	}()
	var cfg C
	select {
	case l := <-read:
		if l.err != nil {
			fmt.Fprintln(os.Stderr, l.err)
			return 2
		}
		cfg = l.cfg
	case <-ctx.Done():
		select {
		case l := <-read: // read as the stop came: a bad file is still said
			if l.err != nil {
				fmt.Fprintln(os.Stderr, l.err)
				return 2
			}
		default:
		}
		fmt.Fprintf(os.Stderr, "%s_bin: stopped while starting (reading %s)\n", p.Name, *file)
		return 0
	}
	dir, level := p.Logging(cfg)
	if *check {
		if p.Warnings != nil {
			for _, w := range p.Warnings(cfg) {
				fmt.Println(w)
			}
		}
		fmt.Printf("%s: ok\n", *file)
		return 0
	}
	// Opening the log can block (a named pipe no reader has open, a
	// log_dir on a mount that does not answer): a stop then ends the
	// start, as SIGTERM's default action did before it was caught. The
	// open left behind ends with the process.
	type opened struct {
		log *logging.Logger
		err error
	}
	open := make(chan opened, 1)
	go func() {
		l, err := logging.New(dir, level, p.Name)
		open <- opened{l, err}
	}()
	var log *logging.Logger
	var err error
	select {
	case o := <-open:
		log, err = o.log, o.err
	case <-ctx.Done():
		fmt.Fprintf(os.Stderr, "%s_bin: stopped while starting (opening the log in %q)\n", p.Name, dir)
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s: %v\n", *file, dirKey, err)
		return 1
	}
	defer log.Close()
	if len(p.LogWith) > 0 {
		log.Logger = log.Logger.With(p.LogWith...)
	}
	logOpen.Store(log)

	svc, err := p.New(ctx, cfg, log.Logger)
	if err != nil && ctx.Err() != nil {
		// Stopped while starting: nothing runs yet, nothing is lost.
		log.Info("stopped while starting", "err", err)
		return 0
	}
	if err != nil {
		log.Error("start failed", "err", err)
		fmt.Fprintf(os.Stderr, "%s_bin: %v\n", p.Name, err)
		return 1
	}
	var reload func()
	if r, ok := svc.(Reloader); ok {
		r.SetLevelFunc(log.SetLevel)
		reload = func() {
			// A SIGHUP during the stop only reopens the log.
			if ctx.Err() == nil {
				r.RequestReload()
			}
		}
	}
	// The log is reopened at each SIGHUP until Main returns, the stop
	// included: logrotate renames the log and sends SIGHUP at any time,
	// and the renamed file may be compressed and removed while a long
	// stop still writes to it, its last lines (what was not delivered)
	// lost with it.
	reopenEnd, reopenEnded := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(reopenEnded)
		log.ReopenOn(hup, reopenEnd, reload)
	}()
	defer func() {
		close(reopenEnd)
		// A reopen stuck in its open (a log_dir on a mount that does
		// not answer, a named pipe without a reader) must not keep the
		// process from exiting; one that ends after the log's Close
		// closes what it opened.
		select {
		case <-reopenEnded:
		case <-time.After(time.Second):
		}
	}()
	defer svc.Close() // before the log stops being reopened: it may log
	p.Started(log.Logger, svc, cfg)
	if err := svc.Run(ctx); err != nil {
		log.Error("stopped with error", "err", err)
		fmt.Fprintf(os.Stderr, "%s_bin: %v\n", p.Name, err)
		return 1
	}
	return 0
}
