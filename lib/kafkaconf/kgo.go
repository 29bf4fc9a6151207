package kafkaconf

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/logging"
)

// minVersion is the oldest Kafka the binaries speak to: record batches,
// headers and the idempotent producer arrived in 0.11.
const minVersion = "0.11.0"

// versions parses the version key: empty means "negotiate with the
// brokers" (ApiVersions), a version caps the requests at what that Kafka
// release speaks. nil, false when the value is not a Kafka version.
func versions(v string) (*kversion.Versions, bool) {
	if v == "" {
		return nil, true
	}
	vs := kversion.FromString(v)
	if vs == nil {
		return nil, false
	}
	return vs, true
}

// tooOld reports whether v names a Kafka older than minVersion.
func tooOld(vs *kversion.Versions) bool {
	if vs == nil {
		return false
	}
	floor := kversion.FromString(minVersion)
	// A version caps request versions; a release older than the floor
	// lacks a request version the floor has (produce v3).
	floorProduce, _ := floor.LookupMaxKeyVersion(0)
	produce, ok := vs.LookupMaxKeyVersion(0)
	return !ok || produce < floorProduce
}

// Opts returns the kgo options every client of the binary name shares:
// seed brokers, client id, dial timeout, metadata age, TLS, SASL, the
// version cap and the library's log at the verbose level. The caller adds
// its producer or consumer options.
func (c Config) Opts(name string, brokers []string, log *slog.Logger) ([]kgo.Opt, error) {
	vs, ok := versions(c.Version)
	if !ok {
		return nil, fmt.Errorf("kafka.version %q: not a Kafka version like 2.8.0", c.Version)
	}
	if tooOld(vs) {
		return nil, fmt.Errorf("kafka.version %q: %s needs Kafka %s or newer", c.Version, name, minVersion)
	}
	id := c.ClientID
	if id == "" {
		id = name
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(id),
		kgo.DialTimeout(time.Duration(c.DialTimeoutMs) * time.Millisecond),
		kgo.MetadataMaxAge(time.Duration(c.MetadataRefreshMs) * time.Millisecond),
		// A leader move or a lost broker asks for new metadata at once;
		// kgo's default 5 s floor between refreshes would hold records that
		// long after every election.
		kgo.MetadataMinAge(100 * time.Millisecond),
	}
	if vs != nil {
		opts = append(opts, kgo.MaxVersions(vs))
	}
	if c.TLS.Enable {
		tc, err := c.TLS.config()
		if err != nil {
			return nil, fmt.Errorf("kafka.tls: %w", err)
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.SASL.Mechanism != "" {
		m, err := c.SASL.mechanism()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	if log != nil {
		// Always attached: its Level follows the log's, so that a
		// log_level raised to 16 by a reload brings the client's lines.
		opts = append(opts, kgo.WithLogger(kgoLog{log}))
	}
	return opts, nil
}

func (s SASL) mechanism() (sasl.Mechanism, error) {
	password, err := config.SecretOf(s.Password, s.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("kafka.sasl: %w", err)
	}
	switch s.Mechanism {
	case "PLAIN":
		return plain.Auth{User: s.User, Pass: password}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: s.User, Pass: password}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: s.User, Pass: password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("kafka.sasl.mechanism %q: not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", s.Mechanism)
}

// kgoLog passes franz-go's own log lines to the binary's log at the
// verbose level (log_level 16); they are per connection and per request.
type kgoLog struct{ l *slog.Logger }

// Level is asked before each line: none unless the log takes the verbose
// level now (log_level can change while the client runs).
func (k kgoLog) Level() kgo.LogLevel {
	if k.l.Enabled(context.Background(), logging.LevelVerbose) {
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelNone
}

func (k kgoLog) Log(_ kgo.LogLevel, msg string, keyvals ...any) {
	k.l.Log(context.Background(), logging.LevelVerbose, "kafka client: "+msg, keyvals...)
}
