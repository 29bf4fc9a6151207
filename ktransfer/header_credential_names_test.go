package ktransfer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// credentialHeaders are protocol.headers names that carry a credential by
// the rule: the name holds auth, key, token, secret, password, cookie,
// session or credential, in any case.
var credentialHeaders = []string{
	"Authorization", "Proxy-Authorization", "Authentication", "X-Auth-Key", "X-Auth-Token", "X-Access-Token",
	"X-Api-Key", "X-Signing-Key", "X-Client-Secret", "X-Db-Password", "Cookie", "X-Session-Id", "X-Credential",
}

// TestHeaderCredentialNamesNotShownInErrors: the value of a header named
// like a credential by the rule is not printed by a start-up error about
// it, in either form a mistake takes.
func TestHeaderCredentialNamesNotShownInErrors(t *testing.T) {
	for _, name := range credentialHeaders {
		secret := "s3cr3t-" + strings.ToLower(name)
		for _, tc := range []struct{ form, headers, want string }{
			{"control character", "  - " + name + ": \"v " + secret + "\\u0001\"\n", "protocol.headers[0]." + name + ": must hold no control characters"},
			{"one string", "  - " + name + ":" + secret + "\n", "protocol.headers[0]: must be a mapping"},
		} {
			f := filepath.Join(t.TempDir(), "m.yaml")
			if err := os.WriteFile(f, []byte("topic: t\nbackend_servers: [127.0.0.1:80]\nprotocol:\n uri: /p\n headers:\n"+tc.headers), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ktransfer.LoadModule(f)
			if err == nil {
				t.Errorf("%s, %s: loaded", name, tc.form)
				continue
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s, %s: %v\nlacks %q", name, tc.form, err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s, %s: the problem shows the header's credential: %v", name, tc.form, err)
			}
		}
	}
}

// TestConfigHashLeavesHeaderCredentialNamesOut: the shown config hash
// does not change when only the values of headers named like a credential
// by the rule change; another header's value changes it.
func TestConfigHashLeavesHeaderCredentialNamesOut(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ktransfer.yaml")
	if err := os.WriteFile(file, []byte("zk_hosts: [127.0.0.1:2181]\nzk_chroot: /mq/c\nbroker_hosts: [127.0.0.1:9092]\nmodule_conf_dir: "+dir+
		"\nmodule_enabled: [m]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hashOf := func(credential, trace string) string {
		t.Helper()
		module := "topic: t\nbackend_servers: [127.0.0.1:8080]\nprotocol:\n  uri: /x\n  headers:\n"
		for _, name := range credentialHeaders {
			module += "    - " + name + ": " + credential + "\n"
		}
		module += "    - X-Trace: " + trace + "\n"
		if err := os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(module), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := ktransfer.LoadConfig(file)
		if err != nil {
			t.Fatal(err)
		}
		return ktransfer.ConfigHash(cfg)
	}
	h := hashOf("c1", "t1")
	if other := hashOf("c2", "t1"); other != h {
		t.Errorf("only credential headers' values changed: hash %s → %s; want unchanged", h, other)
	}
	if other := hashOf("c1", "t2"); other == h {
		t.Errorf("the X-Trace value changed: hash %s unchanged", h)
	}
}
