// Command kmonitor_bin serves the push delay of ktransfer modules.
//
//	kmonitor_bin -f conf/kmonitor.yaml [-check]
package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/daemon"
)

var program = daemon.Program[kmonitor.Config]{
	Name:        "kmonitor",
	DefaultFile: "conf/kmonitor.yaml",
	Load:        kmonitor.LoadConfig,
	Logging:     func(c kmonitor.Config) (string, int) { return c.Base.LogDir, c.Base.LogLevel },
	LogDirKey:   "base.log_dir",
	New: func(_ context.Context, c kmonitor.Config, l *slog.Logger) (daemon.Service, error) {
		return kmonitor.New(c, l)
	},
	Started: func(l *slog.Logger, s daemon.Service, c kmonitor.Config) {
		l.Info("kmonitor started", "addr", s.(*kmonitor.Monitor).Addr(), "clusters", c.Base.Clusters)
	},
	Warnings: kmonitor.Config.Warnings,
}

func main() { os.Exit(program.Main(os.Args[1:])) }
