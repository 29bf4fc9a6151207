package kafkaconf

import (
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
)

func TestSarama(t *testing.T) {
	c := Default()
	c.Version = "2.8.0"
	sc, err := c.Sarama("kproxy")
	if err != nil {
		t.Fatal(err)
	}
	if sc.ClientID != "kproxy" || sc.Version != sarama.V2_8_0_0 || sc.Net.DialTimeout != 3*time.Second {
		t.Errorf("client id %q version %s dial %v", sc.ClientID, sc.Version, sc.Net.DialTimeout)
	}
	c.ClientID = "edge-7"
	if sc, _ := c.Sarama("kproxy"); sc.ClientID != "edge-7" {
		t.Errorf("client_id not used: %q", sc.ClientID)
	}
}

func TestValidate(t *testing.T) {
	c := Config{Version: "banana", DialTimeoutMs: 0, MetadataRefreshMs: 10}
	p := config.NewProblems("k.yaml")
	c.Validate(p)
	err := p.Err()
	for _, want := range []string{`kafka.version: must be a Kafka version like 2.8.0, got "banana"`,
		"kafka.dial_timeout_ms: must be >= 1, got 0", "kafka.metadata_refresh_ms: must be >= 1000, got 10"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v lacks %q", err, want)
		}
	}
}
