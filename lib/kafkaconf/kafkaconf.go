// Package kafkaconf holds the "kafka" configuration section shared by the
// three binaries, TLS and SASL included, and turns it into franz-go (kgo)
// client options.
package kafkaconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
)

// Config is the optional "kafka" section of a binary's configuration file.
type Config struct {
	// Version caps the protocol at what this Kafka release speaks, e.g.
	// "2.8.0"; empty (the default): negotiated with the brokers.
	Version string `yaml:"version"`
	// ClientID is sent to the brokers; empty means the binary's name.
	ClientID string `yaml:"client_id"`
	// DialTimeoutMs bounds connecting to a broker.
	DialTimeoutMs int `yaml:"dial_timeout_ms"`
	// MetadataRefreshMs is how often topic metadata is refreshed.
	MetadataRefreshMs int `yaml:"metadata_refresh_ms"`
	// TLS to the brokers; off unless enable is true.
	TLS TLS `yaml:"tls"`
	// SASL authentication to the brokers; off unless mechanism is set.
	SASL SASL `yaml:"sasl"`
}

// TLS is the "kafka.tls" section.
type TLS struct {
	Enable bool `yaml:"enable"`
	// CAFile holds the PEM certificates that sign the brokers' ones; empty
	// means the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate (both or neither), for
	// brokers that require one (ssl.client.auth=required).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the brokers' certificates
	// (by default the host of the address dialled).
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any broker certificate: encryption without
	// authentication of the broker. For tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// SASL is the "kafka.sasl" section.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL.
	Mechanism string `yaml:"mechanism"`
	User      string `yaml:"user"`
	// Password, or PasswordFile: a file readable by its owner only.
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

// mechanisms are the SASL mechanisms the binaries speak.
var mechanisms = map[string]bool{"PLAIN": true, "SCRAM-SHA-256": true, "SCRAM-SHA-512": true}

// Default returns the defaults of the section.
func Default() Config {
	return Config{
		DialTimeoutMs:     3000,
		MetadataRefreshMs: 60_000,
	}
}

// MaxMs is the largest value of a key in milliseconds: the largest int32,
// as Kafka's wire fields of timeouts (about 24.8 days). Larger values
// would not fit them, nor, far above, a time.Duration.
const MaxMs = 1<<31 - 1

// Validate records the section's problems under the field prefix "kafka".
func (c Config) Validate(p *config.Problems) { c.ValidateAt(p, "kafka") }

// SecurityProtocol is the Kafka security protocol the section speaks, as
// brokers name their listeners' in ZooKeeper (PLAINTEXT, SSL,
// SASL_PLAINTEXT or SASL_SSL).
func (c Config) SecurityProtocol() string {
	switch {
	case c.TLS.Enable && c.SASL.Mechanism != "":
		return "SASL_SSL"
	case c.TLS.Enable:
		return "SSL"
	case c.SASL.Mechanism != "":
		return "SASL_PLAINTEXT"
	}
	return "PLAINTEXT"
}

// ValidateAt records the section's problems under the field prefix given,
// for a section nested elsewhere ("test_cluster.kafka").
func (c Config) ValidateAt(p *config.Problems, prefix string) {
	if vs, ok := versions(c.Version); !ok {
		p.Addf(prefix+".version", c.Version, "must be a Kafka version like 2.8.0, or empty to negotiate")
	} else if tooOld(vs) {
		p.Addf(prefix+".version", c.Version, "must be %s or newer (record batches, headers, idempotence)", minVersion)
	}
	if c.DialTimeoutMs < 1 || c.DialTimeoutMs > MaxMs {
		p.Addf(prefix+".dial_timeout_ms", c.DialTimeoutMs, "must be 1..%d", MaxMs)
	}
	// franz-go refuses a metadata max age above an hour, and a client id
	// longer than 256 bytes.
	if c.MetadataRefreshMs < 1000 || c.MetadataRefreshMs > 3_600_000 {
		p.Addf(prefix+".metadata_refresh_ms", c.MetadataRefreshMs, "must be 1000..3600000 (1 s to 1 h)")
	}
	if len(c.ClientID) > 256 {
		p.Addf(prefix+".client_id", c.ClientID, "must be at most 256 bytes (it has %d)", len(c.ClientID))
	}
	c.TLS.validate(p, prefix+".tls")
	c.SASL.validate(p, prefix+".sasl")
}

// Ineffective is a key of the section that the file sets and that has no
// effect with the rest of it: the binaries warn of it at start and in
// -check (the file keeps loading, as it did).
type Ineffective struct {
	Key    string // under the section's prefix: kafka.tls.ca_file
	Value  any
	Reason string
}

// NoEffect returns the section's keys without effect, named under prefix
// ("kafka", "test_cluster.kafka"): ca_file with insecure_skip_verify, which
// checks no broker certificate. server_name keeps its effect there: it is
// still the name sent to the brokers in the handshake (SNI).
func (c Config) NoEffect(prefix string) []Ineffective {
	if c.TLS.Enable && c.TLS.InsecureSkipVerify && c.TLS.CAFile != "" {
		return []Ineffective{{prefix + ".tls.ca_file", c.TLS.CAFile, "insecure_skip_verify is true: no broker certificate is checked"}}
	}
	return nil
}

func (t TLS) validate(p *config.Problems, prefix string) {
	if !t.Enable {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify {
			p.Add(prefix+".enable", "is false but other tls keys are set; set enable: true or remove them")
		}
		return
	}
	// Every problem at once, each under its key: the CA, the key, and
	// the pair apart (the first one found hid the others).
	if t.CAFile != "" {
		if _, err := caPool(t.CAFile); err != nil {
			p.Add(prefix+".ca_file", err.Error())
		}
	}
	keyOK := true
	if t.KeyFile != "" {
		if err := config.CheckSecretFile(t.KeyFile); err != nil {
			p.Add(prefix+".key_file", err.Error())
			keyOK = false
		}
	}
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		p.Add(prefix+".cert_file", pairMissing(t))
	case t.CertFile != "" && keyOK:
		if _, err := config.LoadX509KeyPair(t.CertFile, t.KeyFile); config.IsUnreadableSecret(err) {
			p.Add(prefix+".key_file", err.Error()) // not the certificate's: the key could not be read
		} else if err != nil {
			p.Add(prefix+".cert_file", pairError(t, err).Error())
		}
	}
}

// config loads the files named; its errors name the key and the file.
func (t TLS) config() (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, // #nosec G402 -- documented as for tests only
	}
	if t.CAFile != "" {
		pool, err := caPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		tc.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New(pairMissing(t))
	}
	if t.CertFile != "" {
		if err := config.CheckSecretFile(t.KeyFile); err != nil {
			return nil, fmt.Errorf("key_file: %w", err)
		}
		cert, err := keyPair(t)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// caPool reads the CA certificates of file.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := config.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", file)
	}
	return pool, nil
}

// keyPair loads the client certificate and its key.
func keyPair(t TLS) (tls.Certificate, error) {
	cert, err := config.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return cert, pairError(t, err)
	}
	return cert, nil
}

func pairError(t TLS, err error) error {
	return fmt.Errorf("cert_file/key_file: %w (cert_file %q, key_file %q)", err, t.CertFile, t.KeyFile)
}

func pairMissing(t TLS) string {
	return fmt.Sprintf("cert_file and key_file go together, got cert_file %q and key_file set: %v", t.CertFile, t.KeyFile != "")
}

func (s SASL) validate(p *config.Problems, prefix string) {
	if s.Mechanism == "" {
		if s.User != "" || s.Password != "" || s.PasswordFile != "" {
			p.Add(prefix+".mechanism", "is empty but other sasl keys are set; set PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
		}
		return
	}
	if !mechanisms[s.Mechanism] {
		p.Addf(prefix+".mechanism", s.Mechanism, "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	}
	if s.User == "" {
		p.Add(prefix+".user", "required with a mechanism")
	}
	p.Secret(prefix, "password", s.Password, s.PasswordFile)
}
