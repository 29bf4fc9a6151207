package ktransfer_test

import (
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestZooKeeperServerWhoseNameNoLongerResolves: zk_hosts lists a server
// whose name was removed from DNS (retired) before one that answers. The
// ZooKeeper client gave up on the name that did not resolve: ktransfer
// did not start, although a server answered. The name is left out and
// the module runs.
func TestZooKeeperServerWhoseNameNoLongerResolves(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.zkAdr = "retired.invalid:2181," + e.zkAdr
	e.produce(t, "t", [][2]string{{"k", "v0"}, {"k", "v1"}})
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the records pushed and committed", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "2" })
	if got := len(b.got()); got != 2 {
		t.Errorf("%d pushes, want 2", got)
	}
}
