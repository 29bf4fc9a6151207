// Package kafkaconf holds the "kafka" configuration section shared by the
// three binaries and turns it into a sarama client configuration.
//
// TLS and SASL settings belong here when they are added, so that every
// binary gets them in the same form.
package kafkaconf

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/logging"
)

// Config is the optional "kafka" section of a binary's configuration file.
type Config struct {
	// Version is the Kafka protocol version to speak, e.g. "2.8.0".
	Version string `yaml:"version"`
	// ClientID is sent to the brokers; empty means the binary's name.
	ClientID string `yaml:"client_id"`
	// DialTimeoutMs bounds connecting to a broker.
	DialTimeoutMs int `yaml:"dial_timeout_ms"`
	// MetadataRefreshMs is how often topic metadata is refreshed.
	MetadataRefreshMs int `yaml:"metadata_refresh_ms"`
}

// Default returns the defaults of the section.
func Default() Config {
	return Config{
		Version:           sarama.DefaultVersion.String(),
		DialTimeoutMs:     3000,
		MetadataRefreshMs: 60_000,
	}
}

// Validate records the section's problems under the field prefix "kafka".
func (c Config) Validate(p *config.Problems) { c.ValidateAt(p, "kafka") }

// ValidateAt records the section's problems under the field prefix given,
// for a section nested elsewhere ("test_cluster.kafka").
func (c Config) ValidateAt(p *config.Problems, prefix string) {
	if _, err := sarama.ParseKafkaVersion(c.Version); err != nil {
		p.Addf(prefix+".version", c.Version, "must be a Kafka version like 2.8.0")
	}
	if c.DialTimeoutMs < 1 {
		p.Addf(prefix+".dial_timeout_ms", c.DialTimeoutMs, "must be >= 1")
	}
	if c.MetadataRefreshMs < 1000 {
		p.Addf(prefix+".metadata_refresh_ms", c.MetadataRefreshMs, "must be >= 1000")
	}
}

// Sarama returns a sarama configuration for a client of the binary name.
// The caller adds its producer or consumer settings.
func (c Config) Sarama(name string) (*sarama.Config, error) {
	v, err := sarama.ParseKafkaVersion(c.Version)
	if err != nil {
		return nil, fmt.Errorf("kafka.version %q: %w", c.Version, err)
	}
	sc := sarama.NewConfig()
	sc.Version = v
	sc.ClientID = c.ClientID
	if sc.ClientID == "" {
		sc.ClientID = name
	}
	d := time.Duration(c.DialTimeoutMs) * time.Millisecond
	sc.Net.DialTimeout = d
	sc.Metadata.RefreshFrequency = time.Duration(c.MetadataRefreshMs) * time.Millisecond
	return sc, nil
}

// RouteLibraryLog sends sarama's own log lines to l at the verbose level
// (log_level 16). sarama's logger is process-wide.
func RouteLibraryLog(l *slog.Logger) {
	if !l.Enabled(context.Background(), logging.LevelVerbose) {
		return
	}
	sarama.Logger = saramaLog{l}
}

type saramaLog struct{ l *slog.Logger }

func (s saramaLog) Print(v ...any) { s.log(fmt.Sprint(v...)) }
func (s saramaLog) Printf(format string, v ...any) {
	s.log(fmt.Sprintf(format, v...))
}
func (s saramaLog) Println(v ...any) { s.log(fmt.Sprint(v...)) }

func (s saramaLog) log(msg string) {
	s.l.Log(context.Background(), logging.LevelVerbose, "sarama", "line", msg)
}
