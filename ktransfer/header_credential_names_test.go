package ktransfer_test

import (
	"strings"
	"testing"
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
			_, err := loadModuleText(t, "topic: t\nbackend_servers: [127.0.0.1:80]\nprotocol:\n uri: /p\n headers:\n"+tc.headers)
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
	hash := moduleHasher(t)
	hashOf := func(credential, trace string) string {
		t.Helper()
		module := "topic: t\nbackend_servers: [127.0.0.1:8080]\nprotocol:\n  uri: /x\n  headers:\n"
		for _, name := range credentialHeaders {
			module += "    - " + name + ": " + credential + "\n"
		}
		module += "    - X-Trace: " + trace + "\n"
		return hash(module)
	}
	h := hashOf("c1", "t1")
	if other := hashOf("c2", "t1"); other != h {
		t.Errorf("only credential headers' values changed: hash %s → %s; want unchanged", h, other)
	}
	if other := hashOf("c1", "t2"); other == h {
		t.Errorf("the X-Trace value changed: hash %s unchanged", h)
	}
}
