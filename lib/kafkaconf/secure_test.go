package kafkaconf_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// produce writes one record with a kgo client built from kc, trying for
// 20 s at most (a loaded machine's stall is no failure).
func produce(kc kafkaconf.Config, addrs []string) error { return produceFor(kc, addrs, 20*time.Second) }

// refused is produce for what must fail: a refused handshake is retried by
// kgo, so it gives up after 5 s.
func refused(kc kafkaconf.Config, addrs []string) error { return produceFor(kc, addrs, 5*time.Second) }

func produceFor(kc kafkaconf.Config, addrs []string, limit time.Duration) error {
	opts, err := kc.Opts("test", addrs, nil)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(opts, kgo.RecordRetries(1), kgo.RequestRetries(1))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	return cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("v")}).FirstErr()
}

func TestTLSAndSASLReachTheBrokers(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			c, kc := kafkatest.StartSecure(t, []kafkatest.Topic{{Name: "t", Partitions: 1}}, mech)
			if err := produce(kc, c.ListenAddrs()); err != nil {
				t.Fatalf("TLS + SASL %s: %v", mech, err)
			}

			// What must fail does.
			wrong := kc
			wrong.SASL.Password = "not-it"
			if err := refused(wrong, c.ListenAddrs()); err == nil {
				t.Errorf("a wrong password was accepted")
			}
			noSASL := kc
			noSASL.SASL = kafkaconf.SASL{}
			if err := refused(noSASL, c.ListenAddrs()); err == nil {
				t.Errorf("no SASL was accepted")
			}
			noCert := kc
			noCert.TLS.CertFile, noCert.TLS.KeyFile = "", ""
			if err := refused(noCert, c.ListenAddrs()); err == nil {
				t.Errorf("a client without certificate was accepted")
			}
			otherCA := kc
			otherCA.TLS.CAFile = testcert.New(t).CAFile
			if err := refused(otherCA, c.ListenAddrs()); err == nil {
				t.Errorf("a broker certificate from an unknown CA was trusted")
			}
		})
	}
}

func TestSASLPasswordFile(t *testing.T) {
	c, kc := kafkatest.StartSecure(t, []kafkatest.Topic{{Name: "t", Partitions: 1}}, "SCRAM-SHA-256")
	file := filepath.Join(t.TempDir(), "kafka.secret")
	if err := os.WriteFile(file, []byte(kc.SASL.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc.SASL.Password, kc.SASL.PasswordFile = "", file
	p := config.NewProblems("k.yaml")
	kc.Validate(p)
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	if err := produce(kc, c.ListenAddrs()); err != nil {
		t.Fatalf("password_file: %v", err)
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	p = config.NewProblems("k.yaml")
	kc.Validate(p)
	if err := p.Err(); err == nil || !strings.Contains(err.Error(), "kafka.sasl.password_file") || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a world-readable password_file: %v", err)
	}
}

func TestValidateSecurity(t *testing.T) {
	certs := testcert.New(t)
	for _, tc := range []struct {
		edit func(*kafkaconf.Config)
		want string
	}{
		{func(c *kafkaconf.Config) { c.TLS.CAFile = certs.CAFile }, "kafka.tls.enable: is false but other tls keys are set"},
		{func(c *kafkaconf.Config) { c.TLS = kafkaconf.TLS{Enable: true, CAFile: "/nonexistent/ca.pem"} }, "kafka.tls.ca_file: open /nonexistent/ca.pem"},
		{func(c *kafkaconf.Config) { c.TLS = kafkaconf.TLS{Enable: true, CAFile: certs.ServerKey} }, "kafka.tls.ca_file: no PEM certificate in"},
		{func(c *kafkaconf.Config) { c.TLS = kafkaconf.TLS{Enable: true, CertFile: certs.ClientCert} }, "kafka.tls.cert_file: cert_file and key_file go together"},
		{func(c *kafkaconf.Config) {
			c.TLS = kafkaconf.TLS{Enable: true, CertFile: certs.ClientCert, KeyFile: certs.ServerKey}
		}, "kafka.tls.cert_file: cert_file/key_file: tls: private key does not match public key"},
		{func(c *kafkaconf.Config) { c.SASL.User = "u" }, "kafka.sasl.mechanism: is empty but other sasl keys are set"},
		{func(c *kafkaconf.Config) { c.SASL = kafkaconf.SASL{Mechanism: "GSSAPI", User: "u", Password: "p"} }, `kafka.sasl.mechanism: must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got "GSSAPI"`},
		{func(c *kafkaconf.Config) { c.SASL = kafkaconf.SASL{Mechanism: "PLAIN", Password: "p"} }, "kafka.sasl.user: required with a mechanism"},
		{func(c *kafkaconf.Config) { c.SASL = kafkaconf.SASL{Mechanism: "PLAIN", User: "u"} }, "kafka.sasl: needs exactly one of password and password_file"},
		{func(c *kafkaconf.Config) {
			c.SASL = kafkaconf.SASL{Mechanism: "PLAIN", User: "u", PasswordFile: "/nonexistent/pw"}
		}, "kafka.sasl.password_file: cannot read the file it names (value not shown: it may be a secret): no such file or directory"},
	} {
		c := kafkaconf.Default()
		tc.edit(&c)
		p := config.NewProblems("k.yaml")
		c.Validate(p)
		if err := p.Err(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

// TestTLSKeyProblemsNameTheFiles: a client key that does not match its
// certificate, a key file holding no key, or the two files switched stop
// the start naming the field and both files (README: "with the file,
// field and value named"), so that the operator knows which pair of the
// configuration to fix.
func TestTLSKeyProblemsNameTheFiles(t *testing.T) {
	certs := testcert.New(t)
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, cert, key string }{
		{"another certificate's key", certs.ClientCert, certs.ServerKey},
		{"no key in the file", certs.ClientCert, empty},
		{"switched", certs.ClientKey, certs.ClientCert},
	} {
		c := kafkaconf.Default()
		c.TLS = kafkaconf.TLS{Enable: true, CertFile: tc.cert, KeyFile: tc.key}
		p := config.NewProblems("k.yaml")
		c.Validate(p)
		err := p.Err()
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), "kafka.tls") || !strings.Contains(err.Error(), tc.cert) || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: %v\ndoes not name kafka.tls, %s and %s", tc.name, err, tc.cert, tc.key)
		}
	}
}

// Every TLS problem is told at once, each under its key: the first one
// found (the CA, then the pairing, then the key) hid the others, and the
// operator fixed one per run of -check.
func TestValidateTLSAllProblems(t *testing.T) {
	certs := testcert.New(t)
	for _, tc := range []struct {
		tls  kafkaconf.TLS
		want []string
	}{
		{kafkaconf.TLS{Enable: true, CAFile: "/nonexistent/ca.pem", CertFile: certs.ClientCert},
			[]string{"kafka.tls.ca_file: open /nonexistent/ca.pem", "kafka.tls.cert_file: cert_file and key_file go together"}},
		{kafkaconf.TLS{Enable: true, CAFile: certs.ServerKey, CertFile: certs.ClientCert, KeyFile: certs.ServerKey},
			[]string{"kafka.tls.ca_file: no PEM certificate in", "kafka.tls.cert_file: cert_file/key_file: tls: private key does not match public key"}},
		{kafkaconf.TLS{Enable: true, CAFile: "/nonexistent/ca.pem", CertFile: certs.ClientCert, KeyFile: "/nonexistent/key.pem"},
			[]string{"kafka.tls.ca_file: open /nonexistent/ca.pem", "kafka.tls.key_file: "}},
		// A key that cannot be read (here a read fails with EIO, as one
		// the service's user may not read does, even for root) is the
		// key's problem, not the certificate's.
		{kafkaconf.TLS{Enable: true, CertFile: certs.ClientCert, KeyFile: "/proc/self/mem"},
			[]string{"kafka.tls.key_file: cannot read the file it names"}},
	} {
		c := kafkaconf.Default()
		c.TLS = tc.tls
		p := config.NewProblems("k.yaml")
		c.Validate(p)
		err := p.Err()
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%+v: got %v, want it to say %q", tc.tls, err, want)
			}
		}
	}
}
