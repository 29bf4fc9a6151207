package ktransfer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestRefusedConfigHashLeavesTypedKeyFileOut: a secret typed where
// kafka.tls.key_file's path belongs is refused without being shown (it
// may be the key itself), and the hash of the files as read — the one a
// refused reload shows in /status — leaves it out too, as it leaves out
// password_file's value: else the hash would confirm a guessed key.
// Another key of the section (cert_file) still changes it.
func TestRefusedConfigHashLeavesTypedKeyFileOut(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ktransfer.yaml")
	hashOf := func(cert, key string) string {
		t.Helper()
		if err := os.WriteFile(file, []byte("zk_hosts: [127.0.0.1:2181]\nzk_chroot: /mq/c\nbroker_hosts: [127.0.0.1:9092]\nmodule_conf_dir: "+dir+
			"\nmodule_enabled: []\nkafka:\n  tls:\n    enable: true\n    cert_file: "+cert+"\n    key_file: "+key+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := ktransfer.LoadConfig(file)
		if err == nil || !strings.Contains(err.Error(), "key_file") {
			t.Fatalf("a key_file naming no file: %v", err)
		}
		if strings.Contains(err.Error(), key) {
			t.Fatalf("the problem shows key_file's value: %v", err)
		}
		return ktransfer.ConfigHash(cfg)
	}
	h := hashOf("/etc/kt/client.pem", "s3cr3t-key-one")
	if h == "" {
		t.Fatal("no hash for the files as read")
	}
	if other := hashOf("/etc/kt/client.pem", "s3cr3t-key-two"); other != h {
		t.Errorf("only key_file's value (naming no file: it may be the key itself) changed: hash %s → %s; want unchanged", h, other)
	}
	if other := hashOf("/etc/kt/other.pem", "s3cr3t-key-one"); other == h {
		t.Errorf("cert_file changed: hash %s unchanged", h)
	}
}
