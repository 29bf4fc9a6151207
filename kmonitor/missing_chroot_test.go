package kmonitor_test

import (
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// eventuallyRefused polls /delay<query> until it answers 503 with every
// one of want in its body, for up to limit.
func (e *env) eventuallyRefused(t *testing.T, query string, limit time.Duration, want ...string) {
	t.Helper()
	var (
		code int
		got  string
	)
	for start := time.Now(); time.Since(start) < limit; time.Sleep(20 * time.Millisecond) {
		code, got = e.get(t, query)
		if code != 503 {
			continue
		}
		missing := false
		for _, w := range want {
			missing = missing || !strings.Contains(got, w)
		}
		if !missing {
			return
		}
	}
	t.Fatalf("/delay%s after %v: %d %q; want 503 naming all of %q", query, limit, code, got, want)
}

// "Missing data is never healthy": a chroot misspelt in kmonitor.yaml
// (/mq/test-cluster for /mq/test_cluster), or zk_hosts naming the wrong
// ensemble, has nothing under it, and kmonitor monitors nothing. That must
// not read as a cluster whose modules all keep up: the cluster counts an
// error in both zabbix forms, zabbix_lld answers 503 naming the missing
// path (an empty list would have Zabbix mark every item lost), and a
// warning says so once, not at every retry.
func TestMisspeltChrootIsAnErrorNotAHealthyCluster(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 8}})
	var log logBuffer
	e := startWith(t, k, func(c *kmonitor.Config) {
		cl := c.Clusters["test_cluster"]
		cl.Chroot = "/mq/test-cluster" // the brokers and offsets are under /mq/test_cluster
		c.Clusters["test_cluster"] = cl
	}, &log)
	produce(t, e.kafka, "a", 0, 10)
	setOffset(t, e.conn, "m", "a", "0", "3") // lag 7 under the real chroot

	e.eventually(t, "?format=zabbix", "- test_cluster.kmonitor.errors 1\n", 10*time.Second)
	e.eventually(t, "?format=zabbix&keys=item", "- kmonitor.errors[test_cluster] 1\n", time.Second)
	for _, q := range []string{"?format=zabbix_lld", "?format=zabbix_lld&cluster=test_cluster"} {
		e.eventuallyRefused(t, q, time.Second, "test_cluster", "/mq/test-cluster does not exist")
	}
	// Not a wait for an outcome: time for retries that must not log again.
	time.Sleep(time.Second)
	if n := log.count("zookeeper path missing"); n != 1 {
		t.Errorf("the missing chroot logged %d times, want once:\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "path=/mq/test-cluster ") {
		t.Errorf("the warning does not name the missing chroot:\n%s", log.String())
	}
}

// A chroot that ktransfer creates at its first start (a KRaft cluster, its
// brokers in broker_hosts) is missing until then: an error while it is,
// and followed from the moment it appears, the error gone.
func TestChrootCreatedAfterStartIsFollowed(t *testing.T) {
	e, log := startFreshChroot(t)
	e.eventually(t, "?format=zabbix", "- test_cluster.kmonitor.errors 1\n", 10*time.Second)
	e.eventuallyRefused(t, "?format=zabbix_lld", time.Second, "test_cluster", fresh+" does not exist")

	storeFreshOffset(t, e)
	e.eventually(t, "?format=zabbix", "- test_cluster.m.0.delay 7\n- test_cluster.kmonitor.errors 0\n", 10*time.Second)
	e.eventually(t, "?format=zabbix_lld", `[{"{#CLUSTER}":"test_cluster","{#MODULE}":"m","{#TOPIC}":"a","{#PARTITION}":"0"}]`+"\n", time.Second)
	if n := log.count("zookeeper path found"); n != 1 {
		t.Errorf("the chroot's creation logged %d times, want once:\n%s", n, log.String())
	}
}

// "Missing data is never healthy", and the answer names what is missing: a
// chroot that appears (its brokers register in it, or ktransfer creates it
// at its first start) without consumers/ in it yet must no longer be
// reported as "no such chroot". zabbix_lld names <chroot>/consumers from
// then on, and the warning is corrected once. A watch on consumers/ alone
// does not fire when only the chroot is created: the stale message stayed
// until consumers/ appeared.
func TestChrootCreatedWithoutConsumersNamesConsumers(t *testing.T) {
	e, log := startFreshChroot(t)
	e.eventuallyRefused(t, "?format=zabbix_lld", 10*time.Second, "test_cluster", fresh+" does not exist")

	if err := zklayout.CreateAll(e.conn, fresh+"/brokers", zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	e.eventuallyRefused(t, "?format=zabbix_lld", 10*time.Second, "test_cluster", fresh+"/consumers does not exist")
	e.eventually(t, "?format=zabbix", "- test_cluster.kmonitor.errors 1\n", time.Second)
	// Not a wait for an outcome: time for retries that must not log again.
	time.Sleep(time.Second)
	if n := strings.Count(log.String(), "path="+fresh+"/consumers "); n != 1 {
		t.Errorf("the missing consumers/ logged %d times, want once:\n%s", n, log.String())
	}

	// consumers/ is still followed from the moment it appears.
	storeFreshOffset(t, e)
	e.eventually(t, "?format=zabbix", "- test_cluster.m.0.delay 7\n- test_cluster.kmonitor.errors 0\n", 10*time.Second)
}

// "Missing data is never healthy" in Prometheus too: a cluster whose
// <chroot>/consumers does not exist has no lag series and its
// kmonitor_zookeeper_up is 1, so an operator watching Prometheus saw a
// healthy cluster with no consumers where the chroot was misspelt or not
// there yet. kmonitor_zookeeper_path_missing{cluster} is 1 while the chroot,
// or consumers/ in it, is missing, and goes back to 0 once it is read.
func TestMissingConsumersPathShowsInPrometheus(t *testing.T) {
	const missing, found = `kmonitor_zookeeper_path_missing{cluster="test_cluster"} 1`, `kmonitor_zookeeper_path_missing{cluster="test_cluster"} 0`
	e, _ := startFreshChroot(t)
	e.eventuallyContains(t, "?format=prometheus", 10*time.Second, missing, `kmonitor_zookeeper_up{cluster="test_cluster"} 1`)

	// The chroot appears without consumers/ (its brokers register first):
	// still nothing to monitor.
	if err := zklayout.CreateAll(e.conn, fresh+"/brokers", zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	e.eventuallyRefused(t, "?format=zabbix_lld", 10*time.Second, "test_cluster", fresh+"/consumers does not exist")
	e.eventuallyContains(t, "?format=prometheus", time.Second, missing)

	storeFreshOffset(t, e)
	e.eventuallyContains(t, "?format=prometheus", 10*time.Second, found,
		`kmonitor_lag_messages{cluster="test_cluster",module="m",partition="0",topic="a"} 7`)
}

// storeFreshOffset stores module m's offset 3 of topic a's partition 0 in
// chroot fresh, creating the folders: a lag of 7 (startFreshChroot's 10
// records).
func storeFreshOffset(t *testing.T, e *env) {
	t.Helper()
	dir := zklayout.Offsets(fresh, "m", "a")
	if err := zklayout.CreateAll(e.conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(dir+"/0", []byte("3"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
}

// fresh is a chroot that does not exist when kmonitor starts.
const fresh = "/mq/fresh"

// startFreshChroot starts kmonitor on cluster test_cluster with chroot
// fresh (not created) and the brokers in broker_hosts, topic a holding 10
// records, logging to the returned buffer.
func startFreshChroot(t *testing.T) (*env, *logBuffer) {
	t.Helper()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 8}})
	log := new(logBuffer)
	e := startWith(t, k, func(c *kmonitor.Config) {
		cl := c.Clusters["test_cluster"]
		cl.Chroot, cl.BrokerHosts = fresh, k.ListenAddrs()
		c.Clusters["test_cluster"] = cl
	}, log)
	produce(t, e.kafka, "a", 0, 10)
	return e, log
}
