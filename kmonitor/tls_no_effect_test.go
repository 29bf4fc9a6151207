package kmonitor_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestTLSCAFileWithInsecureSkipVerifyWarned: a cluster's kafka.tls.ca_file
// has no effect with insecure_skip_verify (no broker certificate is
// checked): the file loads as before, and its start and -check say so,
// naming the cluster's section.
func TestTLSCAFileWithInsecureSkipVerifyWarned(t *testing.T) {
	ca := testcert.New(t).CAFile
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	doc := "base:\n clusters: [a, b]\na:\n chroot: /mq/a\n zk_hosts: [127.0.0.1:2181]\n" +
		" kafka:\n  tls:\n   enable: true\n   insecure_skip_verify: true\n   ca_file: " + ca + "\n" +
		"b:\n chroot: /mq/b\n zk_hosts: [127.0.0.1:2181]\n kafka:\n  tls:\n   enable: true\n   ca_file: " + ca + "\n"
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := kmonitor.LoadConfig(f)
	if err != nil {
		t.Fatalf("the file is valid and must load: %v", err)
	}
	want := []string{f + ": a.kafka.tls.ca_file: " + ca + " has no effect: insecure_skip_verify is true: no broker certificate is checked"}
	if got := cfg.Warnings(); !slices.Equal(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
}
