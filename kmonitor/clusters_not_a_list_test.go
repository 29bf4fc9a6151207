package kmonitor_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
)

// TestConfigClustersNotAListOneProblem: base.clusters written as one
// name ("clusters: test_cluster", not a list) is refused, naming the
// field and the value. It was also said of the section test_cluster that
// it is "not listed in base.clusters (add it there, or remove the
// section)": it is there, and the advice sends the operator to the wrong
// line. The sections' names are checked against base.clusters only when
// it decoded.
func TestConfigClustersNotAListOneProblem(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	doc := "base:\n clusters: test_cluster\ntest_cluster:\n chroot: /mq/a\n zk_hosts: [127.0.0.1:2181]\n"
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := kmonitor.LoadConfig(f)
	want := f + `:2: base.clusters: must be a list, got "test_cluster"`
	if err == nil || err.Error() != want {
		t.Errorf("LoadConfig: %v\nwant only %q", err, want)
	}
}
