package kmonitor_test

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// The first reading counts as done whatever shape the modules have: one
// with no folder at all, one with offsets/ empty, a topic with no
// partition, a folder and an offset kmonitor may not read. None of them
// may hold zabbix_lld at 503.
func TestZabbixLLDAnsweredOverOddModules(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 2}})
	z := zktest.Start(t)
	conn := zktest.Connect(t, z.Addr)
	open := zk.WorldACL(zk.PermAll)
	private := zk.DigestACL(zk.PermAll, "someone", "else")
	consumers := zklayout.Consumers(chroot)
	for _, p := range []string{
		consumers + "/bare",
		consumers + "/empty/offsets",
		consumers + "/empty/owners",
		consumers + "/notopic/offsets/a",
		consumers + "/ok/offsets/a",
		consumers + "/ok/owners/a",
	} {
		if err := zklayout.CreateAll(conn, p, open); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{consumers + "/ok/offsets/a/0", consumers + "/ok/offsets/a/1"} {
		if _, err := conn.Create(p, []byte("0"), 0, open); err != nil {
			t.Fatal(err)
		}
	}
	if err := zklayout.CreateAll(conn, consumers+"/denied", open); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create(consumers+"/denied/offsets", nil, 0, private); err != nil {
		t.Fatal(err)
	}
	if err := zklayout.CreateAll(conn, consumers+"/deniedoffset/offsets/a", open); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create(consumers+"/deniedoffset/offsets/a/0", []byte("0"), 0, private); err != nil {
		t.Fatal(err)
	}
	e := startOnZK(t, k, z, nil, io.Discard)
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := e.get(t, "?format=zabbix_lld")
		if code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/delay?format=zabbix_lld still %d after 20 s: %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A chroot with no consumers/ (its brokers registered, no ktransfer run
// on the cluster yet, or a chroot one level too high) has no offsets to
// read: that is an error, not a healthy cluster of no modules, and
// zabbix_lld answers 503 naming the path. Once consumers/ exists, empty,
// there is nothing to be unknown: an empty list and no error.
func TestZabbixLLDWithoutConsumersIsAnErrorUntilItExists(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 2}})
	z := zktest.Start(t)
	log := &logBuffer{}
	e := startOnZK(t, k, z, nil, log)
	consumers := zklayout.Consumers(chroot)
	e.eventually(t, "?format=zabbix", "- test_cluster.kmonitor.errors 1\n", 20*time.Second)
	e.eventuallyRefused(t, "?format=zabbix_lld", time.Second, "test_cluster", consumers+" does not exist")
	if !strings.Contains(log.String(), "path="+consumers+" ") {
		t.Errorf("no warning names the missing %s:\n%s", consumers, log.String())
	}

	if err := zklayout.CreateAll(e.conn, consumers, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, "?format=zabbix_lld", "[]\n", 10*time.Second)
	e.eventually(t, "?format=zabbix", "- test_cluster.kmonitor.errors 0\n", time.Second)
}

// A client replaced before its first reading is done leaves the count to
// the next one: once ZooKeeper is back, zabbix_lld answers 200 with every
// partition.
func TestZabbixLLDAnsweredAfterFirstClientReplaced(t *testing.T) {
	const modules, partitions = 40, 8
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: partitions}})
	z := zktest.Start(t)
	conn := zktest.Connect(t, z.Addr)
	for m := range modules {
		dir := zklayout.Offsets(chroot, fmt.Sprintf("module_%02d", m), "a")
		if err := zklayout.CreateAll(conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		for p := range partitions {
			if _, err := conn.Create(dir+"/"+strconv.Itoa(p), []byte("0"), 0, zk.WorldACL(zk.PermAll)); err != nil {
				t.Fatal(err)
			}
		}
	}
	log := &logBuffer{}
	e := startOnZK(t, k, z, shortZKSession, log)
	restart := stopZK(e)
	waitClientReplaced(t, log, 20*time.Second)
	restart(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := e.get(t, "?format=zabbix_lld")
		if code == 200 {
			if n := strings.Count(body, `"{#PARTITION}"`); n != modules*partitions {
				t.Fatalf("zabbix_lld answered 200 with %d partitions, want %d", n, modules*partitions)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/delay?format=zabbix_lld still %d 30 s after ZooKeeper came back: %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
