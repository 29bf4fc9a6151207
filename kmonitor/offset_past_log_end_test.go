package kmonitor_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
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
	_, prom := e.get(t, "?format=prometheus")
	if want := `kmonitor_lag_known{cluster="test_cluster",module="m",partition="0",topic="a"} 0`; !strings.Contains(prom, want) {
		t.Errorf("prometheus output lacks %s", want)
	}

	// Once the log end is past the offset again, the lag is known.
	produce(t, e.kafka, "a", 0, 995)
	e.eventually(t, "?format=zabbix", "- test_cluster.m.0.delay 5\n- test_cluster.kmonitor.errors 0\n", 10*time.Second)
}

// The "past the log end" error must come from the partition's log, not
// from a broker that no longer leads it. A leader cut off from the others
// still believes it leads and answers ListOffsets with its high watermark
// of then (5), while ktransfer read and committed up to 10 from the new
// leader. A request that carries the leader epoch of kmonitor's metadata
// is refused by such a broker (a newer epoch than its own); one without
// it (-1) is answered. Here the broker answers the stale log end to any
// request without an epoch: kmonitor must ask with one, and report lag 0,
// never "committed offset 10 past the log end 5".
func TestStaleLeaderDoesNotMakeCommittedOffsetPastLogEnd(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 10)
	var unfenced atomic.Int64
	e.kafka.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		r := req.(*kmsg.ListOffsetsRequest)
		resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				if rp.CurrentLeaderEpoch != -1 {
					return nil, nil, false // fenced: the broker's own answer
				}
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition, sp.Offset = rp.Partition, 5
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		unfenced.Add(1)
		return resp, nil, true
	})
	t.Cleanup(e.kafka.DropControl)
	setOffset(t, e.conn, "m", "a", "0", "10")

	want := "- test_cluster.m.0.delay 0\n- test_cluster.kmonitor.errors 0\n"
	e.eventually(t, "?format=zabbix", want, 10*time.Second)
	// Polls every 100 ms: every answer of the next second must say so too.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if code, got := e.get(t, "?format=zabbix"); code != 200 || got != want {
			t.Fatalf("/delay?format=zabbix: %d %q, want %q", code, got, want)
		}
	}
	if _, detail := e.get(t, "?detail=1"); strings.Contains(detail, "past the log end") {
		t.Errorf("stale log end reported: %s", detail)
	}
	if n := unfenced.Load(); n > 0 {
		t.Errorf("%d ListOffsets requests without the leader epoch", n)
	}
}
