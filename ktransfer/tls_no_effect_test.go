package ktransfer_test

import (
	"slices"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestTLSCAFileWithInsecureSkipVerifyWarned: kafka.tls.ca_file has no
// effect with insecure_skip_verify (no broker certificate is checked):
// the file loads as before, and its start and -check say so.
func TestTLSCAFileWithInsecureSkipVerifyWarned(t *testing.T) {
	ca := testcert.New(t).CAFile
	cfg, _, conf := loadWithModule(t, "topic: t\nprotocol:\n name: http\n uri: /p\nbackend_servers: [127.0.0.1:80]\n",
		"kafka:\n  tls:\n    enable: true\n    insecure_skip_verify: true\n    ca_file: "+ca+"\n")
	want := []string{conf + ": kafka.tls.ca_file: " + ca + " has no effect: insecure_skip_verify is true: no broker certificate is checked"}
	if got := cfg.Warnings(); !slices.Equal(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
}
