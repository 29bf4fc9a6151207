package kmonitor_test

import (
	"strings"
	"testing"
	"time"
)

// "Missing data is never healthy": a topic deleted and created again, or a
// log truncated by an unclean leader election, while the module's
// ktransfer processes were down, leaves a committed offset (1000) above
// the partition's log end (10). Those records will never be pushed: the
// new ones below 1000 are skipped or the module is stuck. Lag 0 would say
// the module keeps up until the log end passes 1000; it is shown unknown,
// with the reason, until then.
func TestCommittedOffsetPastLogEndIsAnError(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 10)
	setOffset(t, e.conn, "m", "a", "0", "1000")
	e.eventuallyContains(t, "?detail=1", 10*time.Second, `"lag":null,"committed":1000,"log_end":10,`,
		`"error":"committed offset 1000 past the log end 10: topic re-created or log truncated"`)
	e.eventually(t, "", `{"test_cluster":{"m":{"0":null}}}`+"\n", time.Second)
	e.eventually(t, "?format=zabbix", "- test_cluster.kmonitor.errors 1\n", time.Second)
	// Prometheus shows what the JSON detail shows: both offsets, which
	// tell the operator how far the log fell behind the committed offset.
	_, prom := e.get(t, "?format=prometheus")
	for _, want := range []string{
		`kmonitor_lag_known{cluster="test_cluster",module="m",partition="0",topic="a"} 0`,
		`kmonitor_committed_offset{cluster="test_cluster",module="m",partition="0",topic="a"} 1000`,
		`kmonitor_log_end_offset{cluster="test_cluster",module="m",partition="0",topic="a"} 10`,
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("prometheus output lacks %s", want)
		}
	}
	if strings.Contains(prom, `kmonitor_lag_messages{cluster="test_cluster",module="m",partition="0"`) {
		t.Error("prometheus output gives a lag the JSON calls unknown")
	}

	// Once the log end is past the offset again, the lag is known.
	produce(t, e.kafka, "a", 0, 995)
	e.eventually(t, "?format=zabbix", "- test_cluster.m.0.delay 5\n- test_cluster.kmonitor.errors 0\n", 10*time.Second)
}
