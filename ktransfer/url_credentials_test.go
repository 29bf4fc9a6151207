package ktransfer_test

import (
	"strings"
	"testing"
)

// TestURLCredentialsNotShownInErrors: a credential written into a
// backend's URL (user information in backend_servers, a token in
// protocol.uri's query) is not printed by the start-up or reload error
// about that value; the error names the file and the field.
func TestURLCredentialsNotShownInErrors(t *testing.T) {
	for _, tc := range []struct {
		name, module, secret, want string
	}{
		{"user information", "topic: t\nbackend_servers: [\"http://push:s3cr3t-userinfo@10.1.2.1:80/\"]\nprotocol: {uri: /p}\n",
			"s3cr3t-userinfo", "backend_servers[0]: must be host:port"},
		{"user information, no scheme", "topic: t\nbackend_servers: [\"push:s3cr3t-bare@10.1.2.1:80\"]\nprotocol: {uri: /p}\n",
			"s3cr3t-bare", "backend_servers[0]: must be host:port"},
		{"query token, uri refused", "topic: t\nbackend_servers: [10.1.2.1:80]\nprotocol: {uri: \"/p?access_token=s3cr3t-query&k={#KEYS}\"}\n",
			"s3cr3t-query", "protocol.uri: unknown placeholder {#KEYS}"},
		{"query key with white space", "topic: t\nbackend_servers: [10.1.2.1:80]\nprotocol: {uri: \"/p?api_key=s3cr3t-space x\"}\n",
			"s3cr3t-space", "protocol.uri:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := loadModuleText(t, tc.module)
			if err == nil {
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), f) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%v\nlacks %q", err, tc.want)
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Errorf("the problem shows the URL's credential: %v", err)
			}
		})
	}
}

// TestConfigHashLeavesURLCredentialsOut: the hash shown in /status and
// the log leaves out a credential in protocol.uri's query (a parameter
// named like one: token, key, secret, password, auth), as it does those of
// protocol.headers; another parameter's value changes it.
func TestConfigHashLeavesURLCredentialsOut(t *testing.T) {
	hash := moduleHasher(t)
	hashOf := func(token, format string) string {
		t.Helper()
		module := "topic: t\nbackend_servers: [127.0.0.1:8080]\nprotocol:\n  uri: /x/{#TOPIC}?key={#KEY}&access_token=" + token + "&format=" + format + "\n"
		return hash(module)
	}
	h := hashOf("t1", "msgpack")
	if other := hashOf("t2", "msgpack"); other != h {
		t.Errorf("only the access_token value changed: hash %s → %s; want unchanged", h, other)
	}
	if other := hashOf("t1", "json"); other == h {
		t.Errorf("the format value changed: hash %s unchanged", h)
	}
}
