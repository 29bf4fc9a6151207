package kproxy_test

import (
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestPipelinedRecordNotTakenForRefused: with max_in_flight_requests 2 the
// acks=1 client sends a partition's next produce request while the one
// before is out. The broker refuses the first outright (INVALID_RECORD,
// UNKNOWN_SERVER_ERROR, TOPIC_AUTHORIZATION_FAILED: nothing of it written)
// and writes the second. kgo fails the partition's later records with the
// first one's error, the second request's included, before its answer
// comes: that record is in Kafka, and must not be answered as refused
// (503, 502, 403: "not written"), but 504 "may have been written" (or 200).
func TestPipelinedRecordNotTakenForRefused(t *testing.T) {
	for _, tc := range []struct {
		code int16
		want int // the refused record's own answer, or 504
	}{{87, 503}, {-1, 502}, {29, 403}} { // INVALID_RECORD, UNKNOWN_SERVER_ERROR, TOPIC_AUTHORIZATION_FAILED
		t.Run(strconv.Itoa(int(tc.code)), func(t *testing.T) { testPipelinedRecordNotTakenForRefused(t, tc.code, tc.want) })
	}
}

func testPipelinedRecordNotTakenForRefused(t *testing.T, code int16, want int) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.MaxInFlightRequests = 2 })
	decode(t, p.post(t, "topic="+topic+"&key=k", unique(t, "warm-up"))) // a first answer: kgo pipelines from now on

	release := make(chan struct{})
	var seen atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if seen.Add(1) > 1 {
			return nil, nil, false // the second request: written
		}
		c.KeepControl()
		c.SleepControl(func() { <-release })
		return kafkatest.ProduceError(req.(*kmsg.ProduceRequest), code), nil, true
	})
	written := kproxy.ProduceRequestsWritten(p.srv)
	first, second := make(chan answer, 1), make(chan answer, 1)
	go func() { first <- p.post(t, "topic="+topic+"&key=k", unique(t, "refused")) }()
	waitFor(t, "the first request at the broker", func() bool { return seen.Load() == 1 })
	go func() { second <- p.post(t, "topic="+topic+"&key=k", unique(t, "pipelined")) }()
	waitFor(t, "the second request written behind it", func() bool { return kproxy.ProduceRequestsWritten(p.srv) == written+2 })
	close(release)

	a, b := <-first, <-second
	if a.code != want && a.code != 504 {
		t.Errorf("the refused record: %d %q, want %d (or 504: kproxy cannot tell it from the pipelined one)", a.code, a.body, want)
	}
	kafka := inKafka(t, c)
	if n := kafka[string(unique(t, "refused"))]; n != 0 {
		t.Errorf("the refused record is in Kafka %d times", n)
	}
	n := kafka[string(unique(t, "pipelined"))]
	t.Logf("pipelined record: %d %q, in Kafka %d times", b.code, strings.TrimSpace(b.body), n)
	if n != 1 {
		t.Fatalf("the broker should have written the second request once, found its record %d times", n)
	}
	if b.code != 200 && (b.code != 504 || !strings.Contains(b.body, "may have been written")) {
		t.Errorf("the pipelined record is in Kafka, answered %d %q: want 504 \"may have been written\" (or 200)", b.code, strings.TrimSpace(b.body))
	}
}
