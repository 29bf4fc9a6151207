package kmonitor_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/tcpproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zkserver"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// kmonitor with zk_auth is asked to stop while its ZooKeeper does not
// answer (a network partition: connections accepted, nothing comes back):
// Run returns at once, not once the digest authentication has waited a
// whole session timeout.
func TestStopsPromptlyWhileZooKeeperDoesNotAnswer(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	z := zktest.Start(t)
	px, err := tcpproxy.Start(z.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	px.Freeze()
	cfg := kmonitor.DefaultConfig()
	cfg.Base.Clusters = []string{"test_cluster"}
	cfg.HTTPServer.Port = 0
	cfg.HTTPServer.ListenHost = "127.0.0.1"
	cfg.Clusters = map[string]kmonitor.ClusterConfig{"test_cluster": {
		Chroot: chroot, ZKHosts: []string{px.Addr()}, ZKConnectTimeoutMs: 1000, ZKSessionTimeoutMs: 20000,
		Kafka: kafkaconf.Default(), BrokerHosts: k.ListenAddrs(),
		ZKAuth: zklayout.Auth{User: "kmonitor", Password: "zk-pass"},
	}}
	m, err := kmonitor.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	if !waitFor(10*time.Second, func() bool { return px.Conns() > 0 }) {
		t.Fatal("kmonitor did not connect to ZooKeeper")
	}
	cancel()
	// Waiting for the authentication's answer takes the whole 20 s
	// session; half of it leaves a loaded machine time to stop.
	start := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Run returned %v after it was asked to stop", d)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("Run still running 10s after it was asked to stop (ZooKeeper not answering)")
		px.Thaw() // lets the authentication answer, so that Run ends
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// zkThroughProxy has test_cluster reach its ZooKeeper through a TCP proxy
// the test can freeze, set in *px (closed at cleanup), with a session of
// sessionMs asked for.
func zkThroughProxy(t *testing.T, px **tcpproxy.Proxy, sessionMs int) func(*kmonitor.Config) {
	return func(c *kmonitor.Config) {
		cl := c.Clusters["test_cluster"]
		p, err := tcpproxy.Start(cl.ZKHosts[0])
		if err != nil {
			t.Fatal(err)
		}
		*px = p
		t.Cleanup(func() { p.Close() })
		cl.ZKHosts = []string{p.Addr()}
		cl.ZKSessionTimeoutMs = sessionMs
		c.Clusters["test_cluster"] = cl
	}
}

// ZooKeeper stops answering (a network partition) for less than the
// session timeout: the offsets kmonitor holds are still current, and the
// brokers, discovered from ZooKeeper before, still answer. Every lag stays
// known: reading the brokers' registrations again must not hold up the
// polls of the log ends until the ZooKeeper client gives up on its
// connection.
func TestLagKnownWhileZooKeeperDoesNotAnswerWithinSession(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	// Ticks of 1 s: a session of 20 s (a server grants 2..20 ticks; the
	// tests' usual one, of 500 ms ticks, 10 s at most). The outage is
	// dated from the last answer, up to a sixth of the session before the
	// freeze: 11 s of it stay well within the session.
	z, err := zkserver.Start(zkserver.Config{Dir: t.TempDir(), TickMs: 1000})
	if err != nil {
		t.Fatalf("start zookeeper: %v", err)
	}
	t.Cleanup(func() { _ = z.Stop() })
	var px *tcpproxy.Proxy
	e := startOnZK(t, k, z, zkThroughProxy(t, &px, 20000), io.Discard)
	produce(t, e.kafka, "a", 0, 4)
	setOffset(t, e.conn, "m", "a", "0", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":3}}}`+"\n", 10*time.Second)

	px.Freeze()
	defer px.Thaw()
	// Log ends not read for max(3 polls, a poll + 5 s) turn unknown: watch
	// for twice that, well within the 20 s session.
	for end := time.Now().Add(11 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if code, body := e.get(t, "?detail=1"); code != 200 || !strings.Contains(body, `"lag":3`) {
			t.Fatalf("ZooKeeper silent for less than a session: %d %s; want the lag known", code, body)
		}
	}
}
