// Command ktransfer_bin pushes Kafka records to HTTP backends.
//
//	ktransfer_bin -f conf/ktransfer.yaml [-check]
//	ktransfer_bin -f conf/ktransfer.yaml -replay-dead-letters MODULE [-since 2024-05-01T12:00:00Z]
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/daemon"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/logging"
)

var program = daemon.Program[ktransfer.Config]{
	Name:        "ktransfer",
	DefaultFile: "conf/ktransfer.yaml",
	Load:        ktransfer.LoadConfig,
	Logging:     func(c ktransfer.Config) (string, int) { return c.LogDir, c.LogLevel },
	New: func(ctx context.Context, c ktransfer.Config, l *slog.Logger) (daemon.Service, error) {
		return ktransfer.NewContext(ctx, c, l)
	},
	// Every line says its process: processes of a fleet on one host with
	// the same files write one log file (the pid is in their instance's
	// id, which the "ktransfer started" line gives).
	LogWith:  []any{"pid", os.Getpid()},
	Warnings: ktransfer.Config.Warnings,
	Started: func(l *slog.Logger, s daemon.Service, c ktransfer.Config) {
		t := s.(*ktransfer.Transfer)
		l.Info("ktransfer started", "instance", t.ID(), "admin", t.AdminAddr(), "modules", c.ModuleEnabled)
	},
}

func main() { os.Exit(runArgs(os.Args[1:])) }

// runArgs is the daemon or, with -replay-dead-letters, a replay that reports
// and exits: 0 when it went through, 1 when it could not, 2 for bad usage
// or a bad configuration, 3 when a replay ended with dead letters given up
// again or deleted before it read them.
func runArgs(args []string) int {
	fs := flag.NewFlagSet("ktransfer_bin", flag.ContinueOnError)
	file := fs.String("f", program.DefaultFile, "configuration file")
	check := fs.Bool("check", false, "validate the configuration and exit")
	module := fs.String("replay-dead-letters", "", "push `MODULE`'s dead letters to its backends again, report and exit")
	since := fs.String("since", "", "with -replay-dead-letters: only the dead letters written at or after this RFC 3339 `TIME`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		// The flags end at the first other word: a -check or -since after
		// it would be ignored (the daemon started, every dead letter
		// replayed), and a file named without -f would not be read.
		fmt.Fprintf(os.Stderr, "ktransfer_bin: unexpected argument %q (flags go before it; the file is -f FILE)\n", fs.Arg(0))
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case set["replay-dead-letters"] && *module == "":
		// A script's variable left unset: the daemon's own flag parsing
		// would say the flag is not defined.
		fmt.Fprintln(os.Stderr, "ktransfer_bin: -replay-dead-letters needs a module name")
		return 2
	case *module == "" && set["since"]:
		fmt.Fprintln(os.Stderr, "ktransfer_bin: -since needs -replay-dead-letters MODULE")
		return 2
	case *module == "":
		return program.Main(args)
	case *check:
		fmt.Fprintln(os.Stderr, "ktransfer_bin: -check and -replay-dead-letters exclude each other")
		return 2
	}
	var from time.Time
	if set["since"] { // an empty one too: it is no time, not "from the start"
		var err error
		if from, err = time.Parse(time.RFC3339, *since); err != nil {
			fmt.Fprintf(os.Stderr, "ktransfer_bin: -since %q: not an RFC 3339 time like 2024-05-01T12:00:00Z\n", *since)
			return 2
		}
	}
	cfg, err := ktransfer.LoadConfig(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log, err := logging.New("", cfg.LogLevel, "ktransfer") // standard error: a command, not the daemon
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// A hangup (the terminal closed) stops it as an interrupt does: with
	// its report, the pushes under way given shutdown_timeout_ms. Not when
	// it was started ignoring hangups (nohup): it goes on, as asked.
	stopOn := []os.Signal{syscall.SIGINT, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		stopOn = append(stopOn, syscall.SIGHUP)
	}
	ctx, stop := signal.NotifyContext(context.Background(), stopOn...)
	defer stop()
	rep, err := ktransfer.Replay(ctx, cfg, *module, from, log.Logger)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ktransfer_bin: %v\n", err)
		if rep.Took > 0 {
			fmt.Fprintf(os.Stderr, "ktransfer_bin: so far: %v\n", rep)
		}
		return 1
	}
	fmt.Println(rep)
	code := 0
	if rep.GivenUp > 0 {
		// Done, but not every dead letter delivered: a script that checks
		// the exit status must not take it for a replay done.
		fmt.Fprintf(os.Stderr, "ktransfer_bin: %d dead letters given up again (still in the dead-letter topic)\n", rep.GivenUp)
		code = 3
	}
	if rep.Deleted > 0 {
		// Lost before they could be replayed: not a replay done either.
		fmt.Fprintf(os.Stderr, "ktransfer_bin: %d dead letters were deleted (retention) before the replay read them\n", rep.Deleted)
		code = 3
	}
	return code
}
