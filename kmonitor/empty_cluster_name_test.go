package kmonitor_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
)

// TestConfigEmptyClusterNameRefused: a cluster named "" (clusters:
// [""] with a section "":) was loaded. Its zabbix lines start with a bare
// dot (- .m.0.delay), and /delay?cluster= — the way to ask for it — shares
// its answer cache with /delay: it was answered every cluster's lags. An
// empty name is a start-up error naming the file, the field and the value.
func TestConfigEmptyClusterNameRefused(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	doc := "base:\n clusters: [test_cluster, \"\"]\ntest_cluster:\n chroot: /mq/a\n zk_hosts: [127.0.0.1:2181]\n" +
		"\"\":\n chroot: /mq/b\n zk_hosts: [127.0.0.1:2181]\n"
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	want := f + `: base.clusters[1]: must be a non-empty name, got ""`
	if _, err := kmonitor.LoadConfig(f); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("cluster with an empty name: %v\nlacks %q", err, want)
	}
}
