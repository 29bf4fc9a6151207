package kafkaconf

import (
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestOpts(t *testing.T) {
	c := Default()
	if _, err := c.Opts("kproxy", []string{"127.0.0.1:9092"}, nil); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for id, want := range map[string]string{"": "kproxy", "edge-7": "edge-7"} {
		c.ClientID = id
		opts, err := c.Opts("kproxy", []string{"127.0.0.1:9092"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		got := cl.OptValue(kgo.ClientID)
		dial := cl.OptValue(kgo.DialTimeout)
		cl.Close()
		if got != want || dial != 3*time.Second {
			t.Errorf("client_id %q: client id %v, dial timeout %v; want %q, 3s", id, got, dial, want)
		}
	}
	c.Version = "2.8.0"
	if _, err := c.Opts("kproxy", []string{"127.0.0.1:9092"}, nil); err != nil {
		t.Fatalf("version 2.8.0: %v", err)
	}
	for v, want := range map[string]string{"banana": "not a Kafka version", "0.10.2": "needs Kafka 0.11.0 or newer"} {
		c.Version = v
		if _, err := c.Opts("kproxy", nil, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("version %q: %v, want %q", v, err, want)
		}
	}
	c.Version = "0.10.2"
	p := config.NewProblems("k.yaml")
	c.Validate(p)
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "kafka.version: must be 0.11.0 or newer") {
		t.Errorf("0.10.2 validated as %v", err)
	}
}

func TestValidate(t *testing.T) {
	c := Config{Version: "banana", DialTimeoutMs: 0, MetadataRefreshMs: 10}
	p := config.NewProblems("k.yaml")
	c.Validate(p)
	err := p.Err()
	for _, want := range []string{`kafka.version: must be a Kafka version like 2.8.0, or empty to negotiate, got "banana"`,
		"kafka.dial_timeout_ms: must be 1..2147483647, got 0", "kafka.metadata_refresh_ms: must be 1000..3600000 (1 s to 1 h), got 10"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v lacks %q", err, want)
		}
	}
	// franz-go's own limits: refused by Validate, not at the client's start.
	c = Config{DialTimeoutMs: 3000, MetadataRefreshMs: 3_700_000, ClientID: strings.Repeat("x", 257)}
	p = config.NewProblems("k.yaml")
	c.Validate(p)
	err = p.Err()
	for _, want := range []string{"kafka.metadata_refresh_ms: must be 1000..3600000 (1 s to 1 h), got 3700000",
		"kafka.client_id: must be at most 256 bytes (it has 257)"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v lacks %q", err, want)
		}
	}
}
