package kproxy_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestLargeProducerNumLoads attacks DESIGN's first compatibility promise:
// a 2015 key that no longer applies is accepted with a start-up note.
// producer_num has no effect (one Kafka client per acks level), yet a
// 2015 file with producer_num: 100 was refused — "must be <= 64 (each is a
// set of broker connections)", a reason from when it had one.
func TestLargeProducerNumLoads(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	cfg, err := kproxy.LoadConfig(writeConfig(t, c.ListenAddrs()[0], "producer_num: 100"))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	var out runtest.Log
	srv, err := kproxy.New(cfg, slog.New(slog.NewTextHandler(&out, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv.Close()
	if !strings.Contains(out.String(), "key=producer_num value=100") {
		t.Errorf("producer_num: 100 not noted at start; log:\n%s", out.String())
	}
}
