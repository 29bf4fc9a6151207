// Command kproxy_bin is the HTTP → Kafka proxy.
//
//	kproxy_bin -f conf/kproxy.yaml [-check]
package main

import (
	"log/slog"
	"os"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/daemon"
)

var program = daemon.Program[kproxy.Config]{
	Name:        "kproxy",
	DefaultFile: "conf/kproxy.yaml",
	Load:        kproxy.LoadConfig,
	Logging:     func(c kproxy.Config) (string, int) { return c.LogDir, c.LogLevel },
	New:         func(c kproxy.Config, l *slog.Logger) (daemon.Service, error) { return kproxy.New(c, l) },
	Started: func(l *slog.Logger, s daemon.Service, c kproxy.Config) {
		srv := s.(*kproxy.Server)
		l.Info("kproxy started", "addr", srv.Addr(), "grpc", srv.GRPCAddr(), "admin", srv.AdminAddr(), "brokers", c.BrokerHosts)
	},
}

func main() { os.Exit(program.Main(os.Args[1:])) }
