// Command kproxy_bin is the HTTP → Kafka proxy.
//
//	kproxy_bin -f conf/kproxy.yaml [-check]
package main

import (
	"context"
	"log/slog"
	"net"
	"os"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/daemon"
)

var program = daemon.Program[kproxy.Config]{
	Name:        "kproxy",
	DefaultFile: "conf/kproxy.yaml",
	Load:        kproxy.LoadConfig,
	Logging:     func(c kproxy.Config) (string, int) { return c.LogDir, c.LogLevel },
	New: func(ctx context.Context, c kproxy.Config, l *slog.Logger) (daemon.Service, error) {
		return kproxy.NewContext(ctx, c, l)
	},
	Warnings: kproxy.Config.Warnings,
	Started: func(l *slog.Logger, s daemon.Service, c kproxy.Config) {
		srv := s.(*kproxy.Server)
		l.Info("kproxy started", "addr", srv.Addr(), "grpc", addrOrOff(srv.GRPCAddr()), "admin", addrOrOff(srv.AdminAddr()), "brokers", c.BrokerHosts)
	},
}

// addrOrOff is a listener's address for the start-up line, "off" when the
// configuration turned the listener off (grpc_port 0, admin_addr "").
func addrOrOff(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

func main() { os.Exit(program.Main(os.Args[1:])) }
