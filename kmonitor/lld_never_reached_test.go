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

// Zabbix takes a discovery answer as the whole list of items: one it no
// longer lists is marked lost and deleted after the rule's "keep lost
// resources period" (at once when it is 0). A kmonitor started while its
// cluster's ZooKeeper is unreachable knows none of its partitions: it must
// not answer the discovery rule an empty list, as if the modules were gone.
func TestZabbixLLDOfClusterNeverReachedIsNotAnEmptyList(t *testing.T) {
	e := startZKUnreachable(t, 0)
	// Once the cluster counts as in error, its partitions are surely unknown.
	e.eventually(t, "?format=zabbix", "- test_cluster.kmonitor.errors 1\n", 10*time.Second)
	for _, q := range []string{"?format=zabbix_lld", "?format=zabbix_lld&cluster=test_cluster"} {
		code, body := e.get(t, q)
		if code == 200 || !strings.Contains(body, "test_cluster") {
			t.Fatalf("/delay%s with no ZooKeeper session ever: %d %q; want an error naming the cluster", q, code, body)
		}
	}
}

// A session is not a reading: right after kmonitor's first session its
// watchers are still listing the modules and reading their offsets, and a
// discovery answered then lists only the partitions read so far, every
// other item marked lost. The first discovery answered 200 must list every
// partition ZooKeeper held before kmonitor started.
func TestZabbixLLDFirstAnswerListsEveryPartition(t *testing.T) {
	const modules, partitions = 60, 8
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: partitions}})
	z := zktest.Start(t)
	conn := zktest.Connect(t, z.Addr)
	for m := range modules {
		dir := zklayout.Offsets(chroot, fmt.Sprintf("module_%02d", m), "a")
		if err := zklayout.CreateAll(conn, dir, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatal(err)
		}
		var ops []any
		for p := range partitions {
			ops = append(ops, &zk.CreateRequest{Path: dir + "/" + strconv.Itoa(p), Data: []byte("0"), Acl: zk.WorldACL(zk.PermAll)})
		}
		if _, err := conn.Multi(ops...); err != nil {
			t.Fatal(err)
		}
	}
	e := startOnZK(t, k, z, nil, io.Discard)
	for start := time.Now(); ; {
		if time.Since(start) > 20*time.Second {
			t.Fatal("/delay?format=zabbix_lld not answered 200 within 20 s")
		}
		code, body := e.get(t, "?format=zabbix_lld")
		if code != 200 {
			time.Sleep(20 * time.Millisecond) // polling: leave the CPU to the watchers reading
			continue
		}
		if n := strings.Count(body, `"{#PARTITION}"`); n != modules*partitions {
			t.Fatalf("first /delay?format=zabbix_lld answered 200 lists %d partitions, want the %d ZooKeeper holds", n, modules*partitions)
		}
		return
	}
}
