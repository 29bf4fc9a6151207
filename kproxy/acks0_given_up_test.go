package kproxy_test

import (
	"bytes"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestAcks0GivenUpCountedLost attacks DESIGN's promise for acks=0: "a
// record finally refused is counted (kproxy_acks0_lost_records_total)".
// An acks=0 record whose every produce request the broker refused
// (NOT_LEADER_FOR_PARTITION: never appended) is given up at
// produce_timeout_ms while another topic's produce request, on another
// broker, is out. It is not in Kafka, and must be counted in
// kproxy_acks0_lost_records_total, which dashboards and alerts read.
func TestAcks0GivenUpCountedLost(t *testing.T) {
	const dead, live = "acks0-dead", "acks0-live"
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: dead, Partitions: 1}, {Name: live, Partitions: 1}})
	if l := c.LeaderFor(live, 0); l == c.LeaderFor(dead, 0) {
		if err := c.MoveTopicPartition(live, 0, (l+1)%3); err != nil {
			t.Fatal(err)
		}
	}
	if c.LeaderFor(live, 0) == c.LeaderFor(dead, 0) {
		t.Fatalf("both topics led by broker %d", c.LeaderFor(dead, 0))
	}
	deadLeader, liveLeader := c.LeaderFor(dead, 0), c.LeaderFor(live, 0)
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 1000 })
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the proxy stops
	var held atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		// By broker: each leads one of the topics (requests may name
		// topics by id).
		switch c.CurrentNode() {
		case deadLeader:
			return kafkatest.ProduceError(req.(*kmsg.ProduceRequest), kerr.NotLeaderForPartition.Code), nil, true
		case liveLeader:
			held.Add(1)
			c.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	out := make(chan int, 1)
	go func() { // an acks=1 record held at its broker: its request is out
		resp, err := http.Post(p.url+"/commit?topic="+live+"&acks=1&key=l", "application/msgpack", bytes.NewReader([]byte{0x01}))
		if err != nil {
			out <- 0
			return
		}
		resp.Body.Close()
		out <- resp.StatusCode
	}()
	waitFor(t, "the live topic's produce request held", func() bool { return held.Load() > 0 })
	if a := p.post(t, "topic="+dead+"&acks=0&key=d", []byte{0x02}); a.code != 200 {
		t.Fatalf("acks=0: %d %q", a.code, a.body)
	}
	count := func(name string) int {
		v, _ := strconv.Atoi(p.metric(t, name)) // absent: 0
		return v
	}
	waitFor(t, "the acks=0 record given up", func() bool {
		return count("kproxy_acks0_lost_records_total")+count("kproxy_acks0_unconfirmed_records_total") >= 1
	})
	if n := endOffsets(t, c, dead); n != 0 {
		t.Fatalf("%d records in %s: the broker was to refuse them all", n, dead)
	}
	if l, u := count("kproxy_acks0_lost_records_total"), count("kproxy_acks0_unconfirmed_records_total"); l != 1 {
		t.Errorf("an acks=0 record refused on every attempt and given up: kproxy_acks0_lost_records_total %d (kproxy_acks0_unconfirmed_records_total %d), want 1", l, u)
	}
	if code := <-out; code != 504 && code != 503 {
		t.Errorf("the held acks=1 record: %d, want 504 (or 503) at its deadline", code)
	}
}
