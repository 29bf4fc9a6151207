// Package conf holds the example configuration files; its test loads each
// of them with its binary's loader, so an example never drifts from the code.
package conf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// loadKtransfer loads ktransfer.yaml from the repository root, where its
// module_conf_dir resolves.
func loadKtransfer(p string) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	if err := os.Chdir(".."); err != nil {
		return err
	}
	defer os.Chdir(wd)
	cfg, err := ktransfer.LoadConfig(filepath.Join("conf", p))
	if err == nil && len(cfg.Modules) != len(cfg.ModuleEnabled) {
		err = fmt.Errorf("loaded %d modules of %d enabled", len(cfg.Modules), len(cfg.ModuleEnabled))
	}
	return err
}

// loaders maps an example file to the loader of the binary that reads it.
var loaders = map[string]func(string) error{
	"kproxy.yaml":   func(p string) error { _, err := kproxy.LoadConfig(p); return err },
	"kmonitor.yaml": func(p string) error { _, err := kmonitor.LoadConfig(p); return err },
	// ktransfer.yaml names module_conf_dir relative to the working
	// directory (./conf/modules, as in 2015); the test runs in conf/.
	"ktransfer.yaml":     func(p string) error { return loadKtransfer(p) },
	"ktransfer_2.yaml":   func(p string) error { return loadKtransfer(p) },
	"test_module_1.yaml": func(p string) error { _, err := ktransfer.LoadModule(p); return err },
	"test_module_2.yaml": func(p string) error { _, err := ktransfer.LoadModule(p); return err },
}

func TestEveryExampleLoads(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("modules/*.yaml")
	files = append(files, more...)
	if len(files) == 0 {
		t.Fatal("no example configuration files")
	}
	for _, f := range files {
		load, ok := loaders[filepath.Base(f)]
		if !ok {
			t.Errorf("%s: no loader knows this file; add it to loaders", f)
			continue
		}
		if err := load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestKtransferConfigMatchesDesign(t *testing.T) {
	// The 2015 form of DESIGN.md loads unchanged.
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "modules"), 0o755)
	os.WriteFile(filepath.Join(dir, "ktransfer.yaml"), []byte("log_dir: ./log\nlog_level: 4\nzk_chroot: /mq/test_cluster\n"+
		"zk_timeout_ms: 3000\nzk_hosts:\n - 10.1.1.1:2181\nmodule_conf_dir: "+filepath.Join(dir, "modules")+
		"\nmodule_enabled:\n - test_module_1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "modules", "test_module_1.yaml"), []byte("topic: test_topic\nmethods:\n - TestUserName\n"+
		"protocol:\n name: http\n uri: /XXX/{#TOPIC}?key={#KEY}&transid={#TRANSID}&format=msgpack\n headers:\n  - Host: www.myhug.cn\n"+
		" read_timeout_ms: 0\n write_timeout_ms: 100\n conn_timeout_ms: 100\nworker_num: 100\nwindow_size: 200\n"+
		"max_retry_times: -1\nfail_retry_interval_ms: 200\nbackend_servers:\n - 10.1.2.1:80\n"+
		"serialize_by_key: true\nzk_offset_update_interval_sec: 5\nexpected_processing_time_ms: 50\nwaiting_queue_size: 100\n"), 0o644)
	cfg, err := ktransfer.LoadConfig(filepath.Join(dir, "ktransfer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Modules[0]
	if m.Name != "test_module_1" || m.WorkerNum != 100 || m.Protocol.Headers[0]["Host"] != "www.myhug.cn" || m.MaxRetryTimes != -1 {
		t.Errorf("loaded %+v", m)
	}
	// An enabled module without a file, and a bad module, name file, field and value.
	os.WriteFile(filepath.Join(dir, "modules", "bad.yaml"), []byte("topic: t\nprotocol:\n uri: /x/{#NOPE}\nworker_num: 0\nbackend_servers: [h:1]\ndispatch: random\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "ktransfer.yaml"), []byte("zk_chroot: /mq/c\nzk_hosts: [h:1]\nmodule_conf_dir: "+
		filepath.Join(dir, "modules")+"\nmodule_enabled: [bad, missing]\n"), 0o644)
	_, err = ktransfer.LoadConfig(filepath.Join(dir, "ktransfer.yaml"))
	for _, want := range []string{"bad.yaml: protocol.uri: unknown placeholder {#NOPE}", "bad.yaml: worker_num: must be 1..100000, got 0",
		`bad.yaml: dispatch: must be hash or idle_worker, got "random"`, "module missing:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
}

func TestKproxyConfigMatchesDesign(t *testing.T) {
	// The 2015 form, keys and values as DESIGN.md shows them, loads unchanged.
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	doc := "log_dir: ./log\nlog_level: 4\nport: 5030\nread_timeout_ms: 100\nwrite_timeout_ms: 100\n" +
		"req_pool_size: 10240\nproducer_num: 1\nmax_request_size_bytes: 10485760\nbroker_hosts:\n - 10.1.4.17:5031\n"
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := kproxy.LoadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 5030 || cfg.ReqPoolSize != 10240 || cfg.BrokerHosts[0] != "10.1.4.17:5031" || cfg.MaxRequestSizeBytes != 10485760 {
		t.Errorf("loaded %+v", cfg)
	}
}

// TestFractionalIntegersRefused: a number with a fraction given for an
// integer key is refused at start, naming the file, the key and the value,
// by the three binaries' loaders. It is never cut to its integer part:
// max_retry_times: -0.5 would become 0 (no retry), read_timeout_ms: 0.5
// would become 0 (no read timeout), port: 5030.5 would become 5030. An
// integer written as a float (100.0, 1e3) still loads as that integer.
func TestFractionalIntegersRefused(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	module := "topic: t\nprotocol:\n uri: /x\n read_timeout_ms: 0.5\nmax_retry_times: -0.5\nbackend_servers: [10.1.2.1:80]\n"
	f := write("m.yaml", module)
	_, err := ktransfer.LoadModule(f)
	for _, want := range []string{f + ":4: protocol.read_timeout_ms: must be an integer, got \"0.5\"",
		f + ":5: max_retry_times: must be an integer, got \"-0.5\""} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("module: %v\nlacks %q", err, want)
		}
	}
	f = write("kproxy.yaml", "port: 5030.5\nbroker_hosts: [10.1.4.17:5031]\n")
	if _, err := kproxy.LoadConfig(f); err == nil || !strings.Contains(err.Error(), f+":1: port: must be an integer, got \"5030.5\"") {
		t.Errorf("kproxy: %v", err)
	}
	f = write("kmonitor.yaml", "base: {clusters: [c]}\nhttp_server: {port: 55325.9}\nc: {chroot: /mq/c, zk_hosts: [10.1.1.1:2181]}\n")
	if _, err := kmonitor.LoadConfig(f); err == nil || !strings.Contains(err.Error(), f+":2: http_server.port: must be an integer, got \"55325.9\"") {
		t.Errorf("kmonitor: %v", err)
	}
	f = write("whole.yaml", strings.Replace(strings.Replace(module, "0.5", "100.0", 1), "-0.5", "-1e0", 1))
	if m, err := ktransfer.LoadModule(f); err != nil || m.Protocol.ReadTimeoutMs != 100 || m.MaxRetryTimes != -1 {
		t.Errorf("integers written as floats: read_timeout_ms %d, max_retry_times %d, %v; want 100, -1, nil",
			m.Protocol.ReadTimeoutMs, m.MaxRetryTimes, err)
	}
}

// TestListEntryErrorsNameTheEntry: an entry of a list that has the wrong
// shape is reported as that entry, with its value: a header written as
// one string ("- 'Host: www.myhug.cn'", or "- Host:www.myhug.cn" without
// the space YAML needs) is not a "Name: value" pair, and the error must say
// so, not "must be a list, got a list".
func TestListEntryErrorsNameTheEntry(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "m.yaml")
	os.WriteFile(f, []byte("topic: t\nprotocol:\n uri: /x\n headers:\n  - Host:www.myhug.cn\nbackend_servers: [10.1.2.1:80]\n"), 0o644)
	_, err := ktransfer.LoadModule(f)
	if want := f + `:5: protocol.headers[0]: must be a mapping, got "Host:www.myhug.cn"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("module: %v\nlacks %q", err, want)
	}
	f = filepath.Join(dir, "kproxy.yaml")
	os.WriteFile(f, []byte("broker_hosts:\n - 10.1.4.17:5031\n - {host: 10.1.4.18, port: 5031}\n"), 0o644)
	_, err = kproxy.LoadConfig(f)
	if want := f + ":3: broker_hosts[1]: must be a string, got a mapping"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("kproxy: %v\nlacks %q", err, want)
	}
}

// TestOptionalBoolTypeErrorSaysTrueOrFalse: serialize_by_key, a 2015 key
// kept as "unset, true or false", refuses a value that is not a boolean
// saying what it must be, as every other boolean key does; not "must be
// ptr".
func TestOptionalBoolTypeErrorSaysTrueOrFalse(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m.yaml")
	os.WriteFile(f, []byte("topic: t\nprotocol: {uri: /x}\nbackend_servers: [10.1.2.1:80]\nserialize_by_key: 'false'\n"), 0o644)
	_, err := ktransfer.LoadModule(f)
	if want := f + `:4: serialize_by_key: must be true or false, got "false"`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%v\nlacks %q", err, want)
	}
	os.WriteFile(f, []byte("topic: t\nprotocol: {uri: /x}\nbackend_servers: [10.1.2.1:80]\nserialize_by_key: no\n"), 0o644)
	if m, err := ktransfer.LoadModule(f); err != nil || m.SerializeByKey == nil || *m.SerializeByKey {
		t.Errorf("serialize_by_key: no (YAML 1.1, as 2015 files may write it): %v, %v; want false", m.SerializeByKey, err)
	}
}

// TestNumberTypeErrorSaysANumber: a rate_limit that is not a number is
// refused saying it must be a number, not "must be float64".
func TestNumberTypeErrorSaysANumber(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "m.yaml")
	os.WriteFile(f, []byte("topic: t\nprotocol: {uri: /x}\nbackend_servers: [10.1.2.1:80]\nrate_limit: fast\n"), 0o644)
	if _, err := ktransfer.LoadModule(f); err == nil || !strings.Contains(err.Error(), f+`:4: rate_limit: must be a number, got "fast"`) {
		t.Errorf("module: %v", err)
	}
	f = filepath.Join(dir, "kproxy.yaml")
	os.WriteFile(f, []byte("broker_hosts: [10.1.4.17:5031]\nclients: [{name: a, secret: s, topics: [t], rate_limit: lots}]\n"), 0o644)
	if _, err := kproxy.LoadConfig(f); err == nil || !strings.Contains(err.Error(), f+`:2: clients[0].rate_limit: must be a number, got "lots"`) {
		t.Errorf("kproxy: %v", err)
	}
}

// TestSecondDocumentRefused: a file holding a second YAML document (after
// a "---" line: two files pasted together, an edit appended below an
// end marker) is refused naming the file and the line; its keys were
// ignored without a word, unknown keys included.
func TestSecondDocumentRefused(t *testing.T) {
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	os.WriteFile(f, []byte("---\nbroker_hosts: [10.1.4.17:5031]\nport: 5030\n---\nport: 6000\nbogus_key: 1\n"), 0o644)
	_, err := kproxy.LoadConfig(f)
	if want := f + ":4: a second YAML document"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%v\nlacks %q", err, want)
	}
	// One document, with its optional start and end markers, loads.
	os.WriteFile(f, []byte("---\nbroker_hosts: [10.1.4.17:5031]\nport: 5030\n...\n"), 0o644)
	if _, err := kproxy.LoadConfig(f); err != nil {
		t.Errorf("one document with markers: %v", err)
	}
}

// TestSecretLikeAnAliasNotShown: a secret written unquoted and starting
// with '*' (generated passwords often do) is a YAML alias naming no
// anchor. The file was refused with yaml's "unknown anchor '<the rest of
// the secret>' referenced": the secret, printed at start, logged, and
// shown in ktransfer's /status when a reload is refused. The problem names
// the file and the line, and says to quote the value, without the name.
func TestSecretLikeAnAliasNotShown(t *testing.T) {
	dir := t.TempDir()
	const secret = "Xy8-s3cr3t"
	for _, tc := range []struct {
		file, doc, line string
		load            func(string) error
	}{
		{"kproxy.yaml", "broker_hosts: [10.1.4.17:5031]\nclients:\n - name: shop\n   secret: *" + secret + "\n   topics: [t]\n", ":4:",
			func(p string) error { _, err := kproxy.LoadConfig(p); return err }},
		{"ktransfer.yaml", "zk_hosts: [127.0.0.1:2181]\nzk_chroot: /mq/c\nmodule_enabled: [m]\nzk_auth:\n  user: kt\n  password: *" + secret + "\n", ":6:",
			func(p string) error { _, err := ktransfer.LoadConfig(p); return err }},
		{"kmonitor.yaml", "base:\n clusters: [c1]\nc1:\n chroot: /mq/c1\n zk_hosts: [127.0.0.1:2181]\n kafka: {sasl: {mechanism: PLAIN, user: u, password: *" + secret + "}}\n", ":6:",
			func(p string) error { _, err := kmonitor.LoadConfig(p); return err }},
	} {
		f := filepath.Join(dir, tc.file)
		if err := os.WriteFile(f, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		err := tc.load(f)
		if err == nil {
			t.Errorf("%s: loaded", tc.file)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the problem shows the secret: %v", tc.file, err)
		}
		if !strings.Contains(err.Error(), f+tc.line) || !strings.Contains(err.Error(), "quote") {
			t.Errorf("%s: %v\ndoes not name %s%s and say to quote the value", tc.file, err, f, tc.line)
		}
	}
}

// TestSecretLikeATagOrAnchorRefused: a secret written unquoted and
// starting with '!' or '&' (generated passwords do, as with '*') is a
// YAML tag or anchor on an empty value: the file loaded with the secret
// read as "", without a word, and the client authenticated without it or
// was refused for a reason the file did not seem to give. The problem
// names the file and the line and says to quote the value, without it.
func TestSecretLikeATagOrAnchorRefused(t *testing.T) {
	dir := t.TempDir()
	const secret = "Xy8-s3cr3t"
	for _, mark := range []string{"!", "&", "!!"} {
		for _, tc := range []struct {
			file, doc, line string
			load            func(string) error
		}{
			{"kproxy.yaml", "broker_hosts: [10.1.4.17:5031]\nclients:\n - name: shop\n   secret: " + mark + secret + "\n   topics: [t]\n", ":4:",
				func(p string) error { _, err := kproxy.LoadConfig(p); return err }},
			{"ktransfer.yaml", "zk_hosts: [127.0.0.1:2181]\nzk_chroot: /mq/c\nmodule_enabled: [m]\nzk_auth:\n  user: kt\n  password: " + mark + secret + "\n", ":6:",
				func(p string) error { _, err := ktransfer.LoadConfig(p); return err }},
			{"kmonitor.yaml", "base:\n clusters: [c1]\nc1:\n chroot: /mq/c1\n zk_hosts: [127.0.0.1:2181]\n kafka:\n  sasl:\n   mechanism: PLAIN\n   user: u\n   password: " + mark + secret + "\n", ":10:",
				func(p string) error { _, err := kmonitor.LoadConfig(p); return err }},
		} {
			f := filepath.Join(dir, tc.file)
			if err := os.WriteFile(f, []byte(tc.doc), 0o600); err != nil {
				t.Fatal(err)
			}
			err := tc.load(f)
			if err == nil {
				t.Errorf("%s, %s: loaded", tc.file, mark)
				continue
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s, %s: the problem shows the secret: %v", tc.file, mark, err)
			}
			if !strings.Contains(err.Error(), f+tc.line) || !strings.Contains(err.Error(), "quote") {
				t.Errorf("%s, %s: %v\ndoes not name %s%s and say to quote the value", tc.file, mark, err, f, tc.line)
			}
		}
	}
}
