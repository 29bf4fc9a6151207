package ktransfer

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAdminAddrDefaultRecorded: LoadConfig records whether the file set
// admin_addr; only the default may be replaced by a free port.
func TestAdminAddrDefaultRecorded(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "m.yaml"), []byte("topic: t\nprotocol: {uri: /p}\nbackend_servers: [h:1]\n"), 0o644)
	for _, tc := range []struct {
		line        string
		addr        string
		fromDefault bool
	}{
		{"", "127.0.0.1:5050", true},
		{"admin_addr:\n", "127.0.0.1:5050", true}, // no value keeps the default
		{"admin_addr: 127.0.0.1:5050\n", "127.0.0.1:5050", false},
		{"admin_addr: 0.0.0.0:6060\n", "0.0.0.0:6060", false},
		{"admin_addr: \"\"\n", "", false},
	} {
		f := filepath.Join(dir, "ktransfer.yaml")
		os.WriteFile(f, []byte("zk_chroot: /mq/c\nzk_hosts: [h:1]\nmodule_conf_dir: "+dir+"\nmodule_enabled: [m]\n"+tc.line), 0o644)
		cfg, err := LoadConfig(f)
		if err != nil {
			t.Fatalf("%q: %v", tc.line, err)
		}
		if cfg.AdminAddr != tc.addr || cfg.adminAddrDefault != tc.fromDefault || cfg.file != f {
			t.Errorf("%q: admin_addr %q (default: %v, file %q), want %q (default: %v)", tc.line, cfg.AdminAddr,
				cfg.adminAddrDefault, cfg.file, tc.addr, tc.fromDefault)
		}
	}
}
