package kmonitor_test

import (
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// A partition ktransfer has claimed (its owners/ node is there) but has
// committed no offset for yet (its start is not resolved: Kafka away, or
// it is stuck before its first commit) is a partition the module is
// supposed to push. It must show in every form, its lag unknown and why,
// not vanish as if the module did not have it.
func TestOwnedPartitionWithoutOffsetIsReported(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 4)
	produce(t, e.kafka, "a", 1, 5)
	setOffset(t, e.conn, "m", "a", "0", "1")
	owners := zklayout.Owners(chroot, "m", "a")
	if err := zklayout.CreateAll(e.conn, owners, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"0", "1"} {
		if _, err := e.conn.Create(owners+"/"+p, []byte("host-1-abc"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"0":3,"1":null}}}`+"\n", 10*time.Second)
	e.eventually(t, "?format=zabbix", "- test_cluster.m.0.delay 3\n- test_cluster.kmonitor.errors 1\n", time.Second)
	// Its log end is read and shown, as the README says, though the
	// topic's node records no partition count (a 2015 node, or one made
	// by hand): it was read only for the partitions with an offset and,
	// with a count, every partition of the topic.
	var detail string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, detail = e.get(t, "?detail=1")
		if strings.Contains(detail, `"1":{"topic":"a","partition":"1","lag":null,"committed":null,"log_end":5,`) || time.Now().After(deadline) {
			break
		}
	}
	if !strings.Contains(detail, `"1":{"topic":"a","partition":"1","lag":null,"committed":null,"log_end":5,`) || !strings.Contains(detail, `no offset committed`) {
		t.Errorf("detail of an owned partition without an offset, want its log end 5: %s", detail)
	}
	_, lld := e.get(t, "?format=zabbix_lld")
	if !strings.Contains(lld, `"{#PARTITION}":"1"`) {
		t.Errorf("zabbix_lld leaves out the owned partition without an offset: %s", lld)
	}
	_, prom := e.get(t, "?format=prometheus")
	if want := `kmonitor_lag_known{cluster="test_cluster",module="m",partition="1",topic="a"} 0`; !strings.Contains(prom, want) {
		t.Errorf("prometheus output lacks %s", want)
	}

	// Its first commit: an ordinary partition. The claim released: gone.
	setOffset(t, e.conn, "m", "a", "1", "2")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":3,"1":3}}}`+"\n", 5*time.Second)
	deleteAll(t, e.conn, zklayout.Offsets(chroot, "m", "a")+"/1")
	e.eventually(t, "", `{"test_cluster":{"m":{"0":3,"1":null}}}`+"\n", 5*time.Second)
	if err := e.conn.Delete(owners+"/1", -1); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, "", `{"test_cluster":{"m":{"0":3}}}`+"\n", 5*time.Second)
}
