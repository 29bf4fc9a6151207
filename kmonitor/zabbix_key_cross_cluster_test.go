package kmonitor_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zktest"
)

// TestDottedZabbixKeySharedAcrossClustersForOneCluster: cluster "bj"
// module "ssd.x" and cluster "bj.ssd" module "x" both make the key
// bj.ssd.x.0.delay. The answer for every cluster leaves it out (counted as
// errors, logged), but the answer for one cluster (?cluster=NAME, which
// zabbix_sender run once per cluster is fed) looked for shared keys among
// that cluster's partitions only: each answer sent the key, and the one
// Zabbix item took the two partitions' lags in turn, with no error and no
// warning.
func TestDottedZabbixKeySharedAcrossClustersForOneCluster(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	produce(t, k, "t", 0, 10)
	z := zktest.Start(t)
	conn := zktest.Connect(t, z.Addr)
	setOffset(t, conn, "ssd.x", "t", "0", "3") // lag 7
	setOffset(t, conn, "x", "t", "0", "9")     // lag 1
	e := startOnZK(t, k, z, func(c *kmonitor.Config) {
		cl := c.Clusters["test_cluster"]
		c.Base.Clusters = []string{"bj", "bj.ssd"}
		c.Clusters = map[string]kmonitor.ClusterConfig{"bj": cl, "bj.ssd": cl} // one chroot: both see both modules
	}, io.Discard)
	e.eventually(t, "", `{"bj":{"ssd.x":{"0":7},"x":{"0":1}},"bj.ssd":{"ssd.x":{"0":7},"x":{"0":1}}}`+"\n", 10*time.Second)
	for _, cluster := range []string{"bj", "bj.ssd"} {
		_, zb := e.get(t, "?format=zabbix&cluster="+cluster)
		if strings.Contains(zb, "bj.ssd.x.0.delay") {
			t.Errorf("cluster %s alone: the key another cluster's partition makes too is sent:\n%s", cluster, zb)
		}
		if !strings.Contains(zb, cluster+".kmonitor.errors 1\n") {
			t.Errorf("cluster %s alone: its partition under the shared key is not counted as an error:\n%s", cluster, zb)
		}
	}
}
