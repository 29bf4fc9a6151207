package kmonitor_test

import (
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestFirstDiscoveryListsTheUnstoredPartition: zabbix_lld answers 503
// until the cluster's first reading is done, because Zabbix takes a
// discovery answer as the whole list (a partial one marks the items left
// out as lost). A partition without an offset znode, in a topic whose
// offsets node records a count, is part of that list; neither the count
// nor the topic's partitions (metadata) were part of the first reading,
// and the first 200 answers after a start left it out.
func TestFirstDiscoveryListsTheUnstoredPartition(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 3}})
	produce(t, k, "t", 0, 5)
	produce(t, k, "t", 1, 3)
	produce(t, k, "t", 2, 7)
	z := zktest.Start(t)
	conn := zktest.Connect(t, z.Addr)
	open := zk.WorldACL(zk.PermAll)
	setPartitionCount(t, conn, "m", "t", 2)
	dir := zklayout.Offsets(chroot, "m", "t")
	for _, p := range []string{"0", "1"} {
		if _, err := conn.Create(dir+"/"+p, []byte("3"), 0, open); err != nil {
			t.Fatal(err)
		}
	}
	e := startOnZK(t, k, z, nil, io.Discard)
	deadline := time.Now().Add(20 * time.Second)
	var first string
	partial := 0
	for time.Now().Before(deadline) {
		code, body := e.get(t, "?format=zabbix_lld")
		if code == 200 {
			if first == "" {
				first = body
			}
			if strings.Contains(body, `"{#PARTITION}":"2"`) {
				break
			}
			partial++
		}
		time.Sleep(5 * time.Millisecond)
	}
	if first == "" {
		t.Fatal("zabbix_lld never answered 200")
	}
	if partial > 0 {
		t.Errorf("%d zabbix_lld answers (200, served as the whole list) left out partition 2, unstored; first: %s", partial, first)
	}
}

// TestFirstDiscoveryWaitsForTheBrokersPartitions: as above, with the
// brokers refusing every metadata request at kmonitor's start. The poll
// after the first reading counted as the listing of the partitions though
// no answer came: zabbix_lld answered 200 without the unstored partition
// for as long as the brokers refused (a Kafka outage over a restart).
func TestFirstDiscoveryWaitsForTheBrokersPartitions(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 3}})
	produce(t, k, "t", 0, 5)
	produce(t, k, "t", 1, 3)
	produce(t, k, "t", 2, 7)
	var refuse atomic.Bool
	refuse.Store(true)
	k.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		if refuse.Load() {
			return nil, errors.New("metadata refused by the test"), true // the connection is closed
		}
		return nil, nil, false
	})
	t.Cleanup(k.DropControl)
	z := zktest.Start(t)
	conn := zktest.Connect(t, z.Addr)
	setPartitionCount(t, conn, "m", "t", 2)
	dir := zklayout.Offsets(chroot, "m", "t")
	for _, p := range []string{"0", "1"} {
		if _, err := conn.Create(dir+"/"+p, []byte("3"), 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
	}
	e := startOnZK(t, k, z, nil, io.Discard)
	refused := time.Now().Add(4 * time.Second)
	for time.Now().Before(refused) {
		if code, body := e.get(t, "?format=zabbix_lld"); code == 200 {
			t.Fatalf("zabbix_lld answered 200 while the brokers refused to list the partitions (served as the whole list): %s", body)
		}
		if _, body := e.get(t, "?format=prometheus"); !strings.Contains(body, firstReadUndone) {
			t.Fatalf("Prometheus does not say %q while the brokers refuse to list the partitions: %s", firstReadUndone, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	refuse.Store(false)
	var code int
	var body string
	if !waitFor(20*time.Second, func() bool {
		code, body = e.get(t, "?format=zabbix_lld")
		return code == 200
	}) {
		t.Fatalf("zabbix_lld still answers %d 20 s after the brokers answer again: %s", code, body)
	}
	if !strings.Contains(body, `"{#PARTITION}":"2"`) {
		t.Errorf("zabbix_lld's first 200 once the brokers answer leaves partition 2 out: %s", body)
	}
	if _, body := e.get(t, "?format=prometheus"); !strings.Contains(body, `kmonitor_first_read_done{cluster="test_cluster"} 1`) {
		t.Errorf("Prometheus does not say the first reading is done once zabbix_lld answers: %s", body)
	}
}

// firstReadUndone is the Prometheus sample of a cluster whose partitions
// are not all known yet.
const firstReadUndone = `kmonitor_first_read_done{cluster="test_cluster"} 0`
