package ktransfer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "zk.secret")
	os.WriteFile(open, []byte("pw"), 0o644)
	f := filepath.Join(dir, "ktransfer.yaml")
	os.WriteFile(f, []byte("zk_chroot: mq\nzk_timeout_ms: 10\nzk_hosts: [nohost]\nmodule_conf_dir: "+dir+"\n"+
		"module_enabled: [a, a]\nadmin_addr: 5050\n"+
		"zk_auth: {user: u, password_file: "+open+", acl: secret}\n"+
		"kafka: {tls: {ca_file: /x}, sasl: {mechanism: PLAIN, user: u}}\n"), 0o644)
	_, err := ktransfer.LoadConfig(f)
	for _, want := range []string{
		`zk_chroot: must be an absolute ZooKeeper path like /mq/test_cluster, got "mq"`,
		"zk_timeout_ms: must be >= 1000, got 10",
		`zk_hosts[0]: must be host:port, got "nohost"`,
		`module_enabled: lists a module twice, got "a"`,
		`admin_addr: must be host:port, or empty to turn the admin listener off, got "5050"`,
		"zk_auth.password_file: " + open + " is readable by group or others",
		`zk_auth.acl: must be world_read, private or open, got "secret"`,
		"kafka.tls.enable: is false but other tls keys are set",
		"kafka.sasl: needs exactly one of password and password_file",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			if !strings.HasPrefix(line, f) {
				t.Errorf("problem without the file's name: %q", line)
			}
		}
	}
}
