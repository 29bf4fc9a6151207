package kmonitor_test

import (
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// Consumer groups of other tools share <chroot>/consumers: an old Kafka
// consumer claims its partitions under owners/ too, and keeps its offsets
// in Kafka (offsets.storage=kafka) or commits its first ones only after a
// minute (a console consumer). Such a group is no module of ktransfer's
// that failed to start: it must not show as one, nor count in
// kmonitor.errors, as it did not before kmonitor read owners/.
func TestClaimsOfAGroupWithoutOffsetsInZooKeeperAreNotReported(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 3)
	setOffset(t, e.conn, "m", "a", "0", "1")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":2}}}`+"\n", 10*time.Second)

	group := zklayout.Consumers(chroot) + "/console-consumer-4242"
	if err := zklayout.CreateAll(e.conn, group+"/ids", zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if err := zklayout.CreateAll(e.conn, group+"/owners/a", zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"0", "1"} {
		if _, err := e.conn.Create(group+"/owners/a/"+p, []byte("console-consumer-4242_host-1700000000000-1a2b3c4d-0"),
			zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, got := e.get(t, ""); got != `{"test_cluster":{"m":{"0":2}}}`+"\n" {
			t.Fatalf("with a group of another tool that claimed partitions: got %q", got)
		}
		if _, z := e.get(t, "?format=zabbix"); z != "- test_cluster.m.0.delay 2\n- test_cluster.kmonitor.errors 0\n" {
			t.Fatalf("zabbix with a group of another tool that claimed partitions: got %q", z)
		}
	}
}
