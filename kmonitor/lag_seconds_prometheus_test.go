package kmonitor_test

import (
	"strings"
	"testing"
	"time"
)

// A backlog older than what kmonitor has seen (here: records there before
// its first poll) has a lag in seconds that is only a lower bound, counted
// from that poll: ?detail=1 says so with lag_seconds_at_least. Prometheus
// serves the same kmonitor_lag_seconds, and must say so too, or an alert
// on it clears at every restart of kmonitor with no way to tell. A backlog
// kmonitor saw begin is dated, not a lower bound.
func TestPrometheusSaysWhenLagSecondsIsALowerBound(t *testing.T) {
	e := start(t)
	produce(t, e.kafka, "a", 0, 5)
	setOffset(t, e.conn, "m", "a", "0", "1") // 4 records waiting before kmonitor could see them arrive
	setOffset(t, e.conn, "m", "a", "1", "0") // caught up: the records to come are seen arriving
	e.eventuallyContains(t, "?detail=1", 10*time.Second,
		`"0":{"topic":"a","partition":"0","lag":4,`, `"lag_seconds_at_least":true`,
		`"1":{"topic":"a","partition":"1","lag":0,`)
	produce(t, e.kafka, "a", 1, 2)
	e.eventuallyContains(t, "?detail=1", 10*time.Second, `"1":{"topic":"a","partition":"1","lag":2,`)
	_, detail := e.get(t, "?detail=1")
	if !strings.Contains(detail, `"partition":"0","lag":4,`) || !strings.Contains(detail, `"partition":"1","lag":2,`) ||
		strings.Count(detail, `"lag_seconds_at_least":true`) != 1 || strings.Count(detail, `"lag_seconds_at_least":false`) != 1 {
		t.Fatalf("detail: %s; want partition 0's lag in seconds a lower bound, partition 1's not", detail)
	}
	_, prom := e.get(t, "?format=prometheus")
	for _, want := range []string{
		`kmonitor_lag_seconds_at_least{cluster="test_cluster",module="m",partition="0",topic="a"} 1`,
		`kmonitor_lag_seconds_at_least{cluster="test_cluster",module="m",partition="1",topic="a"} 0`,
	} {
		if !strings.Contains(prom, want) {
			t.Errorf("prometheus output lacks %s: whether kmonitor_lag_seconds is a lower bound (detail: partition 0's is, partition 1's is not) is not told", want)
		}
	}
}
