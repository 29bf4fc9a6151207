package kmonitor_test

import (
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestUnknownLagCausesLogged: README says of every partition whose lag is
// unknown, "Each is logged". Three causes were shown (null, no zabbix
// line, counted in kmonitor.errors) and logged nowhere: an offset znode
// whose name is not a partition number, a committed offset past the log
// end, a partition claimed with no offset committed. Each is logged once
// when it begins, with its module, topic and partition, not at every
// poll; and once it ends.
func TestUnknownLagCausesLogged(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 8}})
	var log logBuffer
	e := startWith(t, k, nil, &log)
	produce(t, e.kafka, "a", 0, 10)
	produce(t, e.kafka, "a", 2, 4)
	setOffset(t, e.conn, "past", "a", "0", "1000")
	setOffset(t, e.conn, "claim", "a", "0", "10") // a module that keeps its offsets in ZooKeeper
	owners := zklayout.Owners(chroot, "claim", "a")
	if err := zklayout.CreateAll(e.conn, owners, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.conn.Create(owners+"/2", []byte("host-1"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	setOffset(t, e.conn, "odd", "a", "02", "1")

	e.eventually(t, "", `{"test_cluster":{"claim":{"0":0,"2":null},"odd":{"02":null},"past":{"0":null}}}`+"\n", 10*time.Second)
	want := []string{
		`module=past topic=a partition=0 reason="committed offset 1000 past the log end 10`,
		`module=claim topic=a partition=2 reason="claimed in owners/, no offset committed yet"`,
		`module=odd topic=a partition=02 reason="offset znode name \"02\" is not a partition number"`,
	}
	logged := func(s string) int { return strings.Count(log.String(), s) }
	deadline := time.Now().Add(10 * time.Second)
	for _, w := range want {
		for logged(w) == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(3 * time.Second) // polls every second: each cause is logged once, not at each
	for _, w := range want {
		if n := logged(w); n != 1 {
			t.Errorf("logged %d times, want once: %s", n, w)
		}
	}
	setOffset(t, e.conn, "past", "a", "0", "4")
	again := `msg="partition lag known again" cluster=test_cluster module=past topic=a partition=0`
	for deadline := time.Now().Add(10 * time.Second); logged(again) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("not logged 10 s after the offset was lowered below the log end: %s", again)
			break
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", log.String())
	}
}
