package ktransfer_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestLogEndNotYetKnownIsNotReportedAsZero attacks the promise that
// /status's high_water and lag and the ktransfer_high_water_offset and
// ktransfer_lag series give the partition's log end: between a claim and
// Kafka's first answer about the partition (a fetch, or the log end asked
// every second) it is not known. It was reported as 0, a lag of 0, while
// the 5 records written before waited. Not known is null in /status, and
// no series, as kmonitor reports a number it does not know.
func TestLogEndNotYetKnownIsNotReportedAsZero(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", numbered(0, 5, keyEach))
	b := newBackend(t, nil)
	// Kafka slow to answer: the claim starts (its start offset asked once)
	// and then waits seconds for its first fetch and for the log end asked.
	f := kafkatest.NewFaults(t, e.kafka)
	f.Sleep(int16(kmsg.Fetch), 20, 3*time.Second)
	f.Sleep(int16(kmsg.ListOffsets), 20, 3*time.Second)
	_, admin := e.startAdmin(t, 0, module("m", "t", b.URL))

	checked := false
	waitFor(t, "partition 0 in /status", 30*time.Second, func() bool {
		var report struct {
			Modules []struct {
				Partitions []map[string]any `json:"partitions"`
			} `json:"modules"`
		}
		if err := json.Unmarshal([]byte(get(t, admin+"/status")), &report); err != nil {
			t.Fatalf("/status: %v", err)
		}
		hw := metricValue(t, admin, `ktransfer_high_water_offset{module="m",partition="0"}`)
		lag := metricValue(t, admin, `ktransfer_lag{module="m",partition="0"}`)
		if len(report.Modules) == 0 || len(report.Modules[0].Partitions) == 0 {
			return false
		}
		ps := report.Modules[0].Partitions[0] // the module's one partition
		// The log end not known yet:
		if ps["high_water"] == nil {
			if ps["lag"] != nil || hw != "" || lag != "" {
				t.Errorf("log end not known: /status lag %v, ktransfer_high_water_offset %q, ktransfer_lag %q; want null and no series",
					ps["lag"], hw, lag)
			}
			checked = true
			return true
		}
		if got := fmt.Sprint(ps["high_water"], " ", ps["lag"]); got != "5 5" && got != "5 0" && !checked {
			t.Fatalf("/status high_water and lag %s before Kafka answered about the partition; want null (not known)", got)
		}
		return true
	})
	if !checked {
		t.Fatalf("the log end was known when the partition first showed in /status: Kafka's answers were not held back")
	}
	reportsLogEnd(t, admin, 5, 0) // once Kafka answers: known, and every record pushed
}
