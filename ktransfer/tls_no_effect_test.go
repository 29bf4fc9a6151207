package ktransfer_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestTLSCAFileWithInsecureSkipVerifyWarned: kafka.tls.ca_file has no
// effect with insecure_skip_verify (no broker certificate is checked):
// the file loads as before, and its start and -check say so.
func TestTLSCAFileWithInsecureSkipVerifyWarned(t *testing.T) {
	ca := testcert.New(t).CAFile
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte("topic: t\nprotocol:\n name: http\n uri: /p\nbackend_servers: [127.0.0.1:80]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "ktransfer.yaml")
	if err := os.WriteFile(conf, []byte("zk_chroot: /mq/c\nzk_hosts: [127.0.0.1:2181]\nbroker_hosts: [127.0.0.1:9092]\n"+
		"module_conf_dir: "+dir+"\nmodule_enabled: [m]\n"+
		"kafka:\n  tls:\n    enable: true\n    insecure_skip_verify: true\n    ca_file: "+ca+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := ktransfer.LoadConfig(conf)
	if err != nil {
		t.Fatalf("the file is valid and must load: %v", err)
	}
	want := []string{conf + ": kafka.tls.ca_file: " + ca + " has no effect: insecure_skip_verify is true: no broker certificate is checked"}
	if got := cfg.Warnings(); !slices.Equal(got, want) {
		t.Errorf("warnings %q, want %q", got, want)
	}
}
