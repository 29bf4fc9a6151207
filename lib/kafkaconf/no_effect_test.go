package kafkaconf_test

import (
	"slices"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestCAFileWithInsecureSkipVerifyWarned: with insecure_skip_verify no
// broker certificate is checked, so ca_file, the CA to check them
// against, has no effect: a client given a CA that never signed the
// brokers' certificates still writes. Such a key is warned of (the start
// and -check of each binary), under the section's prefix. server_name is
// not: it is still the name sent to the brokers in the handshake (SNI).
func TestCAFileWithInsecureSkipVerifyWarned(t *testing.T) {
	c, kc := kafkatest.StartSecure(t, []kafkatest.Topic{{Name: "t", Partitions: 1}}, "PLAIN")
	other := testcert.New(t).CAFile
	skip := kc
	skip.TLS.CAFile, skip.TLS.InsecureSkipVerify = other, true
	if err := produce(skip, c.ListenAddrs()); err != nil {
		t.Fatalf("insecure_skip_verify with a CA that did not sign the brokers' certificates: %v", err)
	}

	keys := func(kc kafkaconf.Config, prefix string) []string {
		var out []string
		for _, k := range kc.NoEffect(prefix) {
			if k.Reason == "" {
				t.Errorf("%s: no reason given", k.Key)
			}
			out = append(out, k.Key)
		}
		return out
	}
	if got, want := keys(skip, "kafka"), []string{"kafka.tls.ca_file"}; !slices.Equal(got, want) {
		t.Errorf("ca_file with insecure_skip_verify: %q without effect, want %q", got, want)
	}
	if got, want := keys(skip, "test_cluster.kafka"), []string{"test_cluster.kafka.tls.ca_file"}; !slices.Equal(got, want) {
		t.Errorf("nested section: %q without effect, want %q", got, want)
	}
	if got := keys(kc, "kafka"); got != nil {
		t.Errorf("ca_file checked: %q said without effect", got)
	}
	named := kc
	named.TLS.CAFile, named.TLS.ServerName, named.TLS.InsecureSkipVerify = "", "kafka.example", true
	if got := keys(named, "kafka"); got != nil {
		t.Errorf("server_name with insecure_skip_verify (still sent as SNI): %q said without effect", got)
	}
}
