package ktransfer_test

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestLogEndReportedWhileTheWindowIsFull attacks the promise that /status's
// high_water and lag, ktransfer_high_water_offset and ktransfer_lag give
// the partition's log end: the window fills behind a record the backend
// refuses, so the reader fetches nothing more of the partition, and
// records are written meanwhile. The log end of the last fetch (5) stayed
// reported, and the lag hid the 5 records written since. Once the backend
// takes the records, those the Kafka client buffered from that fetch
// (carrying its log end, 5) are pushed: the log end reported never goes
// back (it went 10, 5, 10 when the first fix let them set it).
func TestLogEndReportedWhileTheWindowIsFull(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", numbered(0, 5, keyEach))
	var take atomic.Bool
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) {
		if !take.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	mod := module("m", "t", b.URL)
	mod.WindowSize = 2
	_, admin := e.startAdmin(t, 0, mod)
	waitFor(t, "the window full", 30*time.Second, func() bool {
		return metricValue(t, admin, `ktransfer_window_used{module="m"}`) == "2"
	})
	reportsLogEnd(t, admin, 5, 5)
	e.produce(t, "t", numbered(5, 10, keyEach))
	reportsLogEnd(t, admin, 10, 10)

	take.Store(true)
	seen := []int64{10}
	waitFor(t, "every record committed", 30*time.Second, func() bool {
		var report ktransfer.StatusReport
		if err := json.Unmarshal([]byte(get(t, admin+"/status")), &report); err != nil {
			t.Fatal(err)
		}
		for _, m := range report.Modules {
			for _, ps := range m.Partitions {
				if hw := orMinus1(ps.HighWater); hw != seen[len(seen)-1] {
					seen = append(seen, hw)
				}
				if orMinus1(ps.HighWater) < 10 {
					t.Fatalf("the log end reported went back: %v", seen)
				}
				if ps.Committed == 10 {
					return true
				}
			}
		}
		return false
	})
}
