package kproxy_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSpoolDrainRecordLargerThanItsBatches: the drain starts with record
// batches of at most 64 KiB, so that a chunk leaves in several produce
// requests; kgo refuses outright a record larger than its batch limit. A
// spooled record of 200 KB (the topic takes 1 MB) among small ones,
// after 300 KB of small records of its key, must drain like the others,
// in order: the drain takes clients with the topic's own limit before
// handing it over.
func TestSpoolDrainRecordLargerThanItsBatches(t *testing.T) {
	c, p, end := limitOutage(t)
	small, big := strings.Repeat("s", 1000), strings.Repeat("B", 200000)
	var recs []map[string]any
	var want []string
	for i := range 300 {
		v := small
		if i == 150 {
			v = big
		}
		recs = append(recs, map[string]any{"key": "k", "value": "k#" + strconv.Itoa(i) + "#" + v})
		want = append(want, "k#"+strconv.Itoa(i))
	}
	if code, a := postBatch(t, p, "acks=-1&topic="+topic, recs); code != 202 {
		t.Fatalf("batch during the outage: %d %s", code, a.Error)
	}
	clientsAnswered(t, p)
	end()
	deadline := time.Now().Add(20 * time.Second)
	for metricInt(t, p, "kproxy_spool_records") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not drained in 20 s: spool records %s, drain errors %s, written %d",
				p.metric(t, "kproxy_spool_records"), p.metric(t, "kproxy_spool_drain_errors_total"), len(keySeqsWritten(t, c, topic)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := fmt.Sprint(keySeqsWritten(t, c, topic)); got != fmt.Sprint(want) {
		t.Errorf("written %.300s…, want the 300 records in order", got)
	}
	if n := metricInt(t, p, "kproxy_spool_drain_errors_total"); n != 0 {
		t.Errorf("kproxy_spool_drain_errors_total %d, want 0", n)
	}
}
