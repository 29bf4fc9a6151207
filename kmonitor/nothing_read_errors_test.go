package kmonitor_test

import (
	"io"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestNothingReadYetCountsAsError: until kmonitor has read a cluster's
// offsets once (ZooKeeper not reached since the start, or its first
// reading not done), the zabbix form counts the cluster in
// kmonitor.errors: no lag line and "errors 0" would tell Zabbix that the
// cluster has nothing behind. Before, errors stayed 0 for the first
// session timeout (here 20 s) after the start; zabbix_lld was 503 the
// while.
func TestNothingReadYetCountsAsError(t *testing.T) {
	e := startZKUnreachable(t, 20000)
	for _, q := range []struct{ query, want string }{
		{"?format=zabbix", "- test_cluster.kmonitor.errors 1\n"},
		{"?format=zabbix&keys=item", "- kmonitor.errors[test_cluster] 1\n"},
	} {
		if code, got := e.get(t, q.query); code != 200 || got != q.want {
			t.Errorf("/delay%s at the start, ZooKeeper not reached: %d %q, want 200 %q", q.query, code, got, q.want)
		}
	}
	time.Sleep(time.Second)
	if code, got := e.get(t, "?format=zabbix"); got != "- test_cluster.kmonitor.errors 1\n" {
		t.Errorf("/delay?format=zabbix a second later: %d %q, want errors 1", code, got)
	}
}

// TestReadClusterCountsNoErrorBeforeTheNextPoll: once a healthy cluster's
// offsets are read, its errors go to 0 at once, not one poll_interval_ms
// later: the poll that began before the reading ended (at the start) did
// not ask the brokers for the topics read, and the next one waited for its
// tick, here a minute away; the zabbix form counted the cluster as in
// error (and zabbix_lld was 503) all that while after every start.
func TestReadClusterCountsNoErrorBeforeTheNextPoll(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	z := zktest.Start(t)
	setOffset(t, zktest.Connect(t, z.Addr), "m", "a", "0", "0") // there before kmonitor starts
	e := startOnZK(t, k, z, func(c *kmonitor.Config) { c.Base.PollIntervalMs = 60000 }, io.Discard)
	e.eventually(t, "?format=zabbix", "- test_cluster.m.0.delay 0\n- test_cluster.kmonitor.errors 0\n", 15*time.Second)
}

// startZKUnreachable starts kmonitor on test_cluster with a ZooKeeper
// address nothing listens on and a session timeout of sessionMs (0: the
// test default).
func startZKUnreachable(t *testing.T, sessionMs int) *env {
	t.Helper()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	return startWith(t, k, func(c *kmonitor.Config) {
		cl := c.Clusters["test_cluster"]
		cl.ZKHosts = []string{"127.0.0.1:1"}
		if sessionMs > 0 {
			cl.ZKSessionTimeoutMs = sessionMs
		}
		c.Clusters["test_cluster"] = cl
	}, io.Discard)
}
