package main

import (
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestProbe: the probe's health check, Produce and stream succeed against
// kproxy and write their records; a refused request exits 1.
func TestProbe(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 2}})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := kproxy.DefaultConfig()
	cfg.Port, cfg.ListenHost, cfg.AdminAddr, cfg.GRPCPort = 0, "127.0.0.1", "", port
	cfg.BrokerHosts, cfg.AutoCreateTopics = c.ListenAddrs(), false
	srv, err := kproxy.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, srv.Run, 30*time.Second)
	addr := "-addr=127.0.0.1:" + strconv.Itoa(port)
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{addr, "-health"}, 0},
		{[]string{addr, "-topic", "t", "-key", "k", "-n", "3", "-acks", "-1"}, 0},
		{[]string{addr, "-topic", "t", "-stream", "2", "-n", "2"}, 0},
		{[]string{addr, "-topic", "nope"}, 1},
	} {
		if code := run(tc.args); code != tc.want {
			t.Errorf("grpcprobe %v: exit %d, want %d", tc.args, code, tc.want)
		}
	}
	if n := kafkatest.Records(t, c, kafkaconf.Default(), "t"); n != 3+4 {
		t.Errorf("%d records in Kafka, want 7", n)
	}
}
