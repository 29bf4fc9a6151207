package kmonitor_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// Zabbix takes a discovery answer as the whole list of items: one it no
// longer lists is marked lost and deleted after the rule's "keep lost
// resources period" (at once when it is 0). A kmonitor started while its
// cluster's ZooKeeper is unreachable knows none of its partitions: it must
// not answer the discovery rule an empty list, as if the modules were gone.
func TestZabbixLLDOfClusterNeverReachedIsNotAnEmptyList(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	e := startWith(t, k, func(c *kmonitor.Config) {
		cl := c.Clusters["test_cluster"]
		cl.ZKHosts = []string{"127.0.0.1:1"} // nothing listens there
		c.Clusters["test_cluster"] = cl
	}, io.Discard)
	// Once the cluster counts as in error, its partitions are surely unknown.
	e.eventually(t, "?format=zabbix", "- test_cluster.kmonitor.errors 1\n", 10*time.Second)
	for _, q := range []string{"?format=zabbix_lld", "?format=zabbix_lld&cluster=test_cluster"} {
		code, body := e.get(t, q)
		if code == 200 || !strings.Contains(body, "test_cluster") {
			t.Fatalf("/delay%s with no ZooKeeper session ever: %d %q; want an error naming the cluster", q, code, body)
		}
	}
}
