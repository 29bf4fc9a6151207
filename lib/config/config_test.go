package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
)

type inner struct {
	Name  string `yaml:"name"`
	Count int    `yaml:"count"`
}

type sample struct {
	Port    int              `yaml:"port"`
	Hosts   []string         `yaml:"hosts"`
	Inner   inner            `yaml:"inner"`
	List    []inner          `yaml:"list"`
	ByName  map[string]inner `yaml:"by_name"`
	Enabled bool             `yaml:"enabled"`
}

type withRest struct {
	Base inner            `yaml:"base"`
	Rest map[string]inner `yaml:",inline"`
}

func TestDecode(t *testing.T) {
	cases := []struct {
		name, doc string
		wantErr   []string // substrings; empty: no error
		check     func(sample) bool
	}{
		{"empty file keeps defaults", "", nil, func(s sample) bool { return s.Port == 5030 }},
		{"comment only", "# nothing\n", nil, func(s sample) bool { return s.Port == 5030 }},
		{"values", "port: 1\nhosts: [a, b]\ninner: {name: x, count: 2}\nlist:\n - name: y\nby_name:\n  k: {count: 3}\n", nil,
			func(s sample) bool {
				return s.Port == 1 && len(s.Hosts) == 2 && s.Inner.Count == 2 && s.List[0].Name == "y" && s.ByName["k"].Count == 3
			}},
		{"null value keeps default", "port:\n", nil, func(s sample) bool { return s.Port == 5030 }},
		{"unknown key", "port: 1\nprot: 2\n", []string{"f.yaml:2: prot: unknown key", "known keys: by_name, enabled"}, nil},
		{"unknown nested key", "inner:\n  nmae: x\n", []string{"f.yaml:2: inner.nmae: unknown key"}, nil},
		{"unknown key in list item", "list:\n - name: a\n   cnt: 1\n", []string{"list[0].cnt: unknown key"}, nil},
		{"unknown key in map value", "by_name:\n  k:\n    cnt: 1\n", []string{"by_name.k.cnt: unknown key"}, nil},
		{"type error names field and value", "port: abc\n", []string{`f.yaml:1: port: must be an integer, got "abc"`}, nil},
		{"bool", "enabled: maybe\n", []string{`enabled: must be true or false, got "maybe"`}, nil},
		// A quoted value is a string whatever it reads as: "got "false""
		// alone read as a contradiction.
		{"quoted bool", "enabled: \"false\"\n", []string{`enabled: must be true or false, got "false" in quotes (a string: write it without them)`}, nil},
		// yaml reads YAML 1.1's yes/no/on/off/y/n words into a boolean
		// even in quotes: 'on' turned insecure_skip_verify on.
		{"quoted yes/no words", "enabled: 'on'\n", []string{`enabled: must be true or false, got "on" in quotes (a string: write it without them)`}, nil},
		{"quoted n", "enabled: \"n\"\n", []string{`enabled: must be true or false, got "n" in quotes`}, nil},
		{"string-tagged Y", "enabled: !!str Y\n", []string{`enabled: must be true or false, got "Y"`}, nil},
		{"block scalar on", "enabled: >-\n  on\n", []string{`enabled: must be true or false, got "on"`}, nil},
		{"plain yes, as YAML 1.1 reads it", "enabled: yes\n", nil, func(s sample) bool { return s.Enabled }},
		{"tagged as what it is", "enabled: !!bool \"true\"\nport: !!int \"5999\"\n", nil, func(s sample) bool { return s.Enabled && s.Port == 5999 }},
		{"tagged float, whole", "port: !!float 5e3\n", nil, func(s sample) bool { return s.Port == 5000 }},
		{"tagged octal in quotes", "port: !!int \"0777\"\n", []string{`port: must be written without a leading 0`}, nil},
		{"quoted integer", "port: '8080'\n", []string{`port: must be an integer, got "8080" in quotes (a string: write it without them)`}, nil},
		{"list expected", "hosts: 3\n", []string{"hosts: must be a list"}, nil},
		{"mapping expected", "inner: 3\n", []string{`inner: must be a mapping of keys, got "3"`}, nil},
		{"every problem at once", "port: x\nfoo: 1\nbar: 2\n", []string{"port:", "foo: unknown", "bar: unknown"}, nil},
		{"duplicate key", "port: 1\nport: 2\n", []string{"port"}, nil},
		{"syntax error", "port: [1\n", []string{"f.yaml:"}, nil},
		// yaml.v3 gives the parser's lines counted from 0 (its scanner's
		// from 1): the file's line, not the one above it.
		{"syntax error names its line", "port: 1\nhosts: [a\nenabled: true\n", []string{"f.yaml:2: did not find expected ',' or ']'"}, nil},
		{"syntax error on a block", "port: 1\ninner:\n  name: a\n - x\n", []string{"f.yaml:4: did not find expected key"}, nil},
		{"scanner error names its line", "port: 1\n  bad: x\n", []string{"f.yaml:2: mapping values are not allowed in this context"}, nil},
	}
	for _, tc := range cases {
		s := sample{Port: 5030}
		err := config.Decode("f.yaml", []byte(tc.doc), &s)
		if len(tc.wantErr) == 0 {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			} else if tc.check != nil && !tc.check(s) {
				t.Errorf("%s: decoded %+v", tc.name, s)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.wantErr {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, w)
			}
		}
	}
}

func TestInlineMapTakesOtherKeys(t *testing.T) {
	var w withRest
	err := config.Decode("k.yaml", []byte("base: {name: b}\nc1: {count: 1}\nc2: {count: 2}\n"), &w)
	if err != nil || w.Base.Name != "b" || w.Rest["c2"].Count != 2 {
		t.Fatalf("%+v %v", w, err)
	}
	err = config.Decode("k.yaml", []byte("c1: {cuont: 1}\n"), &w)
	if err == nil || !strings.Contains(err.Error(), "c1.cuont: unknown key") {
		t.Fatalf("unknown key inside an inline section: %v", err)
	}
}

func TestProblems(t *testing.T) {
	p := config.NewProblems("conf/modules/m1.yaml")
	if p.Err() != nil {
		t.Fatal("no problems yet")
	}
	p.Addf("window_size", 0, "must be >= 1")
	p.Addf("uri", "/x/{#NOPE}", "unknown placeholder")
	p.Add("backend_servers", "must list at least one server")
	want := "conf/modules/m1.yaml: window_size: must be >= 1, got 0\n" +
		`conf/modules/m1.yaml: uri: unknown placeholder, got "/x/{#NOPE}"` + "\n" +
		"conf/modules/m1.yaml: backend_servers: must list at least one server"
	if got := p.Err().Error(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	var s sample
	if err := config.Load("/nonexistent/kproxy.yaml", &s); err == nil || !strings.Contains(err.Error(), "/nonexistent/kproxy.yaml") {
		t.Fatalf("Load of a missing file: %v", err)
	}
}

type withSecrets struct {
	Protocol struct {
		SigningSecrets []string `yaml:"signing_secrets"`
	} `yaml:"protocol"`
	Auth struct {
		User     string `yaml:"user"`
		Password string `yaml:"password"`
	} `yaml:"auth"`
	APIToken int               `yaml:"api_token"`
	Count    int               `yaml:"count"`
	Headers  map[string]string `yaml:"headers"`
}

// TestDecodeHidesSecrets: a type error of a field that may hold a secret
// names the kind of the value, not the value (the error reaches the log
// and /status); other fields' errors keep naming the value.
func TestDecodeHidesSecrets(t *testing.T) {
	cases := []struct{ doc, secret, want string }{
		{"protocol:\n  signing_secrets: whsec_S3cr3t\n", "S3cr3t", "f.yaml:2: protocol.signing_secrets: must be a list, got a string (not shown: it may be a secret)"},
		{"auth: digest:user:hunter2\n", "hunter2", "f.yaml:1: auth: must be a mapping of keys, got a string (not shown: it may be a secret)"},
		{"api_token: hunter2\n", "hunter2", "f.yaml:1: api_token: must be an integer, got a string (not shown: it may be a secret)"},
		{"count: whsec_S3cr3t\n", "S3cr3t", "f.yaml:1: count: must be an integer, got a string (not shown: it may be a secret)"},
		{"count: 12abc\n", "", `f.yaml:1: count: must be an integer, got "12abc"`},
		// A flow mapping without a space after ':' makes the key and its
		// value one key: it was shown whole, "auth.password:hunter2:
		// unknown key", to stderr, -check and a reload's log line.
		{"auth: {user: u, password:hunter2}\n", "hunter2", "f.yaml:1: auth.password:…: unknown key, not shown past its ':' (in a flow mapping, {secret: x}, write a space after ':'; known keys: password, user)"},
		{"headers: {X-Token:hunter2, X-Token:hunter2}\n", "hunter2", "f.yaml:1: headers.X-Token:…: key appears twice"},
		{"auth: {password:hunter2, password:hunter2}\n", "hunter2", "f.yaml:1: auth.password:…: unknown key, not shown past its ':' (in a flow mapping, {secret: x}, write a space after ':'; known keys: password, user)\nf.yaml:1: auth.password:…: key appears twice"},
	}
	for _, c := range cases {
		var s withSecrets
		err := config.Decode("f.yaml", []byte(c.doc), &s)
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: error %v; want %s", c.doc, err, c.want)
		}
		if c.secret != "" && err != nil && strings.Contains(err.Error(), c.secret) {
			t.Errorf("%q: the error shows the secret: %v", c.doc, err)
		}
	}
}

// TestWithoutSecrets: the values of secret-named keys (and lists under
// them) and whsec_ values anywhere are blanked; the rest is kept.
func TestWithoutSecrets(t *testing.T) {
	doc := "kafka:\n  sasl:\n    user: alice\n    password: hunter2\nsigning_secrets: [whsec_abc, /etc/k]\ntargets: [whsec_def]\nuri: /x # comment\n"
	out := string(config.WithoutSecrets([]byte(doc)))
	for _, secret := range []string{"hunter2", "whsec_abc", "/etc/k", "whsec_def"} {
		if strings.Contains(out, secret) {
			t.Errorf("%q kept in:\n%s", secret, out)
		}
	}
	for _, kept := range []string{"user: alice", "password:", "uri: /x", "# comment"} {
		if !strings.Contains(out, kept) {
			t.Errorf("%q lost in:\n%s", kept, out)
		}
	}
	if config.WithoutSecrets([]byte("a: [1\n")) != nil {
		t.Error("a document that does not parse: want nil")
	}
}

// TestLoadAddr: an address the file leaves out or empty keeps its default
// and says so; one the file sets is taken, even when it equals the
// default (then a taken port is the operator's choice, not replaced); a
// file that cannot be read is an error naming it and keeps the default.
func TestLoadAddr(t *testing.T) {
	type withAddr struct {
		Addr string `yaml:"addr"`
		Port int    `yaml:"port"`
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name, doc, want string
		def             bool
	}{
		{"left out", "port: 1\n", "127.0.0.1:1", true},
		{"no value", "addr:\n", "127.0.0.1:1", true},
		{"set", "addr: 127.0.0.1:2\n", "127.0.0.1:2", false},
		{"set to the default", "addr: 127.0.0.1:1\n", "127.0.0.1:1", false},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
		if err := os.WriteFile(path, []byte(c.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		v := withAddr{Addr: "127.0.0.1:1"}
		data, def, err := config.LoadAddr(path, &v, &v.Addr)
		if err != nil || v.Addr != c.want || def != c.def || string(data) != c.doc {
			t.Errorf("%s: addr %q, default %v, data %q, err %v; want %q, default %v", c.name, v.Addr, def, data, err, c.want, c.def)
		}
	}
	v := withAddr{Addr: "127.0.0.1:1"}
	missing := filepath.Join(dir, "missing.yaml")
	_, def, err := config.LoadAddr(missing, &v, &v.Addr)
	if err == nil || !strings.Contains(err.Error(), missing) || v.Addr != "127.0.0.1:1" || !def {
		t.Errorf("missing file: addr %q, default %v, err %v; want an error naming it and the default kept", v.Addr, def, err)
	}
}

// TestQuotedListNotToldToDropTheQuotes: a quoted string where a list goes
// is not a list without its quotes either: the hint is for booleans and
// numbers only.
func TestQuotedListNotToldToDropTheQuotes(t *testing.T) {
	var s sample
	err := config.Decode("f.yaml", []byte("hosts: \"a, b\"\n"), &s)
	if err == nil || !strings.Contains(err.Error(), `hosts: must be a list, got "a, b"`) || strings.Contains(err.Error(), "in quotes") {
		t.Errorf("a quoted string for a list: %v; want must be a list, without the quotes hint", err)
	}
}
