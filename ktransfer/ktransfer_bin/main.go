// Command ktransfer_bin pushes Kafka records to HTTP backends.
//
//	ktransfer_bin -f conf/ktransfer.yaml [-check]
package main

import (
	"log/slog"
	"os"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/daemon"
)

var program = daemon.Program[ktransfer.Config]{
	Name:        "ktransfer",
	DefaultFile: "conf/ktransfer.yaml",
	Load:        ktransfer.LoadConfig,
	Logging:     func(c ktransfer.Config) (string, int) { return c.LogDir, c.LogLevel },
	New:         func(c ktransfer.Config, l *slog.Logger) (daemon.Service, error) { return ktransfer.New(c, l) },
	Started: func(l *slog.Logger, s daemon.Service, c ktransfer.Config) {
		t := s.(*ktransfer.Transfer)
		l.Info("ktransfer started", "instance", t.ID(), "admin", t.AdminAddr(), "modules", c.ModuleEnabled)
	},
}

func main() { os.Exit(program.Main(os.Args[1:])) }
