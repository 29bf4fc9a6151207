package kproxy_test

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRequestBodiesSizeRefusals: kproxy_request_bodies_total's HELP and
// the README said that a request refused "for its size" is not counted.
// A body over max_request_size_bytes is not (the HTTP server refuses it
// unread), but one that fits it and holds a record over max_message_bytes
// is checked first, then refused 413, and counted. What the HELP leaves
// out is named: max_request_size_bytes.
func TestRequestBodiesSizeRefusals(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.MaxMessageBytes = 1024
		cfg.MaxRequestSizeBytes = 4096
	})
	const metric = `kproxy_request_bodies_total{format="msgpack"}`
	bin := func(n int) []byte { // a msgpack bin 16 of n bytes
		return append([]byte{0xc5, byte(n >> 8), byte(n)}, bytes.Repeat([]byte{'x'}, n)...)
	}
	for _, tc := range []struct {
		name   string
		body   []byte
		counts int
	}{
		{"over max_request_size_bytes", bin(8000), 0},
		{"over max_message_bytes", bin(2000), 1},
	} {
		before, _ := strconv.Atoi(p.metric(t, metric))
		if a := p.post(t, "topic="+topic, tc.body); a.code != 413 {
			t.Fatalf("%s: %d %q, want 413", tc.name, a.code, a.body)
		}
		if after, _ := strconv.Atoi(p.metric(t, metric)); after-before != tc.counts {
			t.Errorf("%s: %s counted %d, want %d", tc.name, metric, after-before, tc.counts)
		}
	}
	help := metricHelp(p.metrics(t), "kproxy_request_bodies_total")
	if strings.Contains(help, "or its size") || !strings.Contains(help, "max_request_size_bytes") {
		t.Errorf("HELP of kproxy_request_bodies_total %q says a request refused for its size is not counted; a record over max_message_bytes is", help)
	}
}
