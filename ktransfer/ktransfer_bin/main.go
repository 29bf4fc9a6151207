// Command ktransfer_bin pushes Kafka records to HTTP backends.
//
//	ktransfer_bin -f conf/ktransfer.yaml [-check]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/logging"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("ktransfer_bin", flag.ContinueOnError)
	file := fs.String("f", "conf/ktransfer.yaml", "configuration file")
	check := fs.Bool("check", false, "validate the configuration file and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := ktransfer.LoadConfig(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if *check {
		fmt.Printf("%s: ok\n", *file)
		return 0
	}
	log, err := logging.New(cfg.LogDir, cfg.LogLevel, "ktransfer")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: log_dir: %v\n", *file, err)
		return 1
	}
	defer log.Close()
	kafkaconf.RouteLibraryLog(log.Logger)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go log.ReopenOn(hup, ctx.Done())

	srv, err := ktransfer.New(cfg, log.Logger)
	if err != nil {
		log.Error("start failed", "err", err)
		fmt.Fprintf(os.Stderr, "ktransfer_bin: %v\n", err)
		return 1
	}
	defer srv.Close()
	log.Info("ktransfer started", "admin", srv.AdminAddr(), "modules", cfg.ModuleEnabled)
	if err := srv.Run(ctx); err != nil {
		log.Error("stopped with error", "err", err)
		fmt.Fprintf(os.Stderr, "ktransfer_bin: %v\n", err)
		return 1
	}
	return 0
}
