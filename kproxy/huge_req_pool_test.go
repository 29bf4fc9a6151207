package kproxy_test

import (
	"log/slog"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestHugeReqPoolSizeStarts: a req_pool_size LoadConfig (and so -check)
// accepts starts. 4611686018427387904 (2^62, "no limit" to its writer)
// passed LoadConfig, and New failed with the Kafka client's words about
// "max buffered records" (2 × req_pool_size + 1000 overflowed to a
// negative number), naming neither the file nor the key.
func TestHugeReqPoolSizeStarts(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	cfg, err := kproxy.LoadConfig(writeConfig(t, c.ListenAddrs()[0], "req_pool_size: 4611686018427387904"))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	srv, err := kproxy.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New refused what LoadConfig accepted: %v", err)
	}
	p := runProxy(t, srv)
	if a := p.post(t, "topic="+topic, []byte{0x01}); a.code != 200 {
		t.Errorf("POST /commit: %d %s, want 200", a.code, a.body)
	}
}
