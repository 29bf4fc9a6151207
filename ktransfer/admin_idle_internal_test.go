package ktransfer

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/daemon/admintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// The admin listener (/status, /health, /metrics, /debug/pprof) bounds
// what a client holds there: a keep-alive connection left idle is closed,
// and so is one whose request body stops arriving; a profile still runs
// the seconds asked for. The test shortens the bounds the server sets (it
// cannot wait a minute); a bound left unset stays unset, and the
// connection is then held past the test's wait.
func TestAdminClosesIdleAndStalledConnections(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	z := zktest.Start(t)
	cfg := DefaultConfig()
	cfg.ZKChroot, cfg.ZKHosts, cfg.BrokerHosts = "/mq/c", strings.Split(z.Addr, ","), k.ListenAddrs()
	cfg.AdminAddr, cfg.ShutdownTimeoutMs = "127.0.0.1:0", 3000
	m := DefaultModule()
	m.Name, m.File, m.Topic = "m", "modules/m.yaml", "t"
	m.Protocol.URI, m.BackendServers = "/push", []string{"127.0.0.1:1"}
	cfg.ModuleEnabled, cfg.Modules = []string{"m"}, []Module{m}
	tr, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	admintest.Shorten(tr.admin)
	runtest.Start(t, tr.Run, 20*time.Second)
	admintest.Check(t, tr.AdminAddr().String())
}
