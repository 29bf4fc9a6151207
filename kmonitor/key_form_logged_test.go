package kmonitor_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// TestModuleKeysChangingFormAreLogged: module m has offsets of topic a
// (keys "<partition>"); it is moved to topic b, and a's offsets stay: its
// keys become "<topic>.<partition>" in JSON and in dotted zabbix keys, so
// the Zabbix items of the old keys get no more values. A warning says so,
// once, naming the cluster and module; and once more when a's offsets are
// removed and the keys go back. Before, nothing said why the items went
// quiet.
func TestModuleKeysChangingFormAreLogged(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}, {Name: "b", Partitions: 1}})
	var logs logBuffer
	e := startWith(t, k, nil, &logs)
	const msg = "partition keys of a module change form"
	setOffset(t, e.conn, "m", "a", "0", "0")
	e.eventually(t, "?format=zabbix", "- test_cluster.m.0.delay 0\n- test_cluster.kmonitor.errors 0\n", 10*time.Second)
	setOffset(t, e.conn, "m", "b", "0", "0")
	e.eventually(t, "?format=zabbix", "- test_cluster.m.a.0.delay 0\n- test_cluster.m.b.0.delay 0\n- test_cluster.kmonitor.errors 0\n", 10*time.Second)
	e.eventually(t, "", `{"test_cluster":{"m":{"a.0":0,"b.0":0}}}`+"\n", time.Second)
	if n := logs.count(msg); n != 1 {
		t.Fatalf("%d warnings %q after m's keys named the topic, want 1:\n%s", n, msg, logs.String())
	}
	if !strings.Contains(logs.String(), `module=m keys=<topic>.<partition>`) {
		t.Errorf("the warning does not name the module and its new keys:\n%s", logs.String())
	}
	deleteAll(t, e.conn, zklayout.Offsets(chroot, "m", "a"))
	e.eventually(t, "", `{"test_cluster":{"m":{"0":0}}}`+"\n", 10*time.Second)
	if n := logs.count(msg); n != 2 {
		t.Errorf("%d warnings %q after m's keys went back, want 2:\n%s", n, msg, logs.String())
	}
}
