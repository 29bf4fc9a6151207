package kproxy

import (
	"log/slog"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/daemon/admintest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// The admin listener (/health, /metrics, /debug/pprof) bounds what a
// client holds there: a keep-alive connection left idle is closed, and so
// is one whose request body stops arriving; a profile still runs the
// seconds asked for. The test shortens the bounds the server sets (it
// cannot wait a minute); a bound left unset stays unset, and the
// connection is then held past the test's wait.
func TestAdminClosesIdleAndStalledConnections(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	cfg := DefaultConfig()
	cfg.Port, cfg.ListenHost, cfg.AdminAddr = 0, "127.0.0.1", "127.0.0.1:0"
	cfg.BrokerHosts = c.ListenAddrs()
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	admintest.Shorten(s.admin)
	runtest.Start(t, s.Run, 30*time.Second)
	admintest.Check(t, s.AdminAddr().String())
}
