package ktransfer_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestUnreachableZooKeeperNamedAtStart: the start fails when ZooKeeper
// does not answer within zk_timeout_ms, and the error must say where to
// look, as every start-up error does: the file, the key and its value.
// Before, it named the address alone ("zookeeper [127.0.0.1:N]: no session
// within zk_timeout_ms").
func TestUnreachableZooKeeperNamedAtStart(t *testing.T) {
	addr := closedAddr(t)
	c := unreachableConf(t, addr, "127.0.0.1:1")
	cfg, err := ktransfer.LoadConfig(c.path)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := ktransfer.New(cfg, testLog(t))
	if err == nil {
		tr.Close()
		t.Fatal("New with ZooKeeper unreachable succeeded")
	}
	for _, want := range []string{c.path + ": ", "zk_hosts [" + addr + "]", "zk_timeout_ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start error %q lacks %q", err, want)
		}
	}
}

// TestUnreachableBrokersNamedAtStart: brokers that do not answer as the
// process starts stop it; the error named the module and the topic, not
// where the brokers it asked came from. It names the module's file, and
// broker_hosts with its file and value.
func TestUnreachableBrokersNamedAtStart(t *testing.T) {
	e := newEnv(t)
	addr := closedAddr(t)
	c := unreachableConf(t, e.zkAdr, addr)
	cfg, err := ktransfer.LoadConfig(c.path)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := ktransfer.New(cfg, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close() // Run's start failure leaves it to the caller
	err = tr.Run(context.Background())
	if err == nil {
		t.Fatal("Run with the brokers unreachable succeeded")
	}
	for _, want := range []string{filepath.Join(c.dir, "modules", "m.yaml") + ": module m", "topic t",
		c.path + ": broker_hosts [" + addr + "]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("start error %q lacks %q", err, want)
		}
	}
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // nothing listens there from now on
	return ln.Addr().String()
}

// unreachableConf writes a configuration of ZooKeeper zk and the brokers
// broker, with module m on topic t, zk_timeout_ms 1000.
func unreachableConf(t *testing.T, zk, broker string) confDir {
	c := confDir{dir: t.TempDir(), zk: zk, brokers: []string{broker}}
	c.path = filepath.Join(c.dir, "ktransfer.yaml")
	if err := os.MkdirAll(filepath.Join(c.dir, "modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	c.enable(t, "zk_timeout_ms: 1000\n", "m")
	c.module(t, "m", "t", "m", "http://127.0.0.1:1", "")
	return c
}
