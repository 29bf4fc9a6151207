// Command kmonitor_bin serves the push delay of ktransfer modules.
//
//	kmonitor_bin -f conf/kmonitor.yaml [-check]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/logging"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("kmonitor_bin", flag.ContinueOnError)
	file := fs.String("f", "conf/kmonitor.yaml", "configuration file")
	check := fs.Bool("check", false, "validate the configuration file and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := kmonitor.LoadConfig(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if *check {
		fmt.Printf("%s: ok\n", *file)
		return 0
	}
	log, err := logging.New(cfg.Base.LogDir, cfg.Base.LogLevel, "kmonitor")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: base.log_dir: %v\n", *file, err)
		return 1
	}
	defer log.Close()
	kafkaconf.RouteLibraryLog(log.Logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go log.ReopenOn(hup, ctx.Done())

	m, err := kmonitor.New(cfg, log.Logger)
	if err != nil {
		log.Error("start failed", "err", err)
		fmt.Fprintf(os.Stderr, "kmonitor_bin: %v\n", err)
		return 1
	}
	defer m.Close()
	log.Info("kmonitor started", "addr", m.Addr(), "clusters", cfg.Base.Clusters)
	if err := m.Run(ctx); err != nil {
		log.Error("stopped with error", "err", err)
		fmt.Fprintf(os.Stderr, "kmonitor_bin: %v\n", err)
		return 1
	}
	return 0
}
