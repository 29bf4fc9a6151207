package kproxy_test

import (
	"log/slog"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestHugeClientRateLimitKeepsItsBurst attacks README's clients.burst
// default ("rate_limit rounded up"): a client given a rate_limit as large
// as "no limit in practice" (1e19 requests/s, a valid finite number)
// had a burst of 1, since the rounded-up rate does not fit an int and
// the conversion gave math.MinInt64: every /batch of two records was
// refused 413 "more than the burst of client", a limit far stricter than
// the one configured.
func TestHugeClientRateLimitKeepsItsBurst(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	f := writeConfig(t, c.ListenAddrs()[0], "clients:\n  - name: shop\n    secret: pw\n    topics: ["+topic+"]\n    rate_limit: 1e19")
	cfg, err := kproxy.LoadConfig(f)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	srv, err := kproxy.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	p := runProxy(t, srv)
	body := mp(t, []map[string]any{{"value": 1}, {"value": 2}, {"value": 3}})
	if a := p.postBatch(t, "acks=1&topic="+topic, "", body, "shop", "pw"); a.code != 200 {
		t.Fatalf("3 records from a client limited to 1e19/s: %s, want 200", a)
	}
	if n := endOffsets(t, c, topic); n != 3 {
		t.Errorf("%d records written, want 3", n)
	}
}
