package kmonitor_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
)

// TestClusterSectionsShareAMergedBlock: two clusters of one ZooKeeper
// ensemble share its settings with a YAML merge key (<<: *anchor). The
// file was refused ("<<: unknown key"); once merge keys load, a merged
// zk_session_timeout_ms must be the one used, not reset to the default
// as a key the section leaves out.
func TestClusterSectionsShareAMergedBlock(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kmonitor.yaml")
	doc := "base:\n clusters: [a, b]\n" +
		"a: &zk\n chroot: /mq/a\n zk_session_timeout_ms: 10000\n zk_connect_timeout_ms: 2000\n zk_hosts: [10.1.1.1:2181]\n kafka: {dial_timeout_ms: 7000}\n" +
		"b:\n <<: *zk\n chroot: /mq/b\n"
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := kmonitor.LoadConfig(f)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	b := cfg.Clusters["b"]
	if b.Chroot != "/mq/b" || b.ZKSessionTimeoutMs != 10000 || b.ZKConnectTimeoutMs != 2000 ||
		len(b.ZKHosts) != 1 || b.Kafka.DialTimeoutMs != 7000 {
		t.Errorf("cluster b: %+v; want a's settings with chroot /mq/b", b)
	}
}
