// Package conf holds the example configuration files; its test loads each
// of them with its binary's loader, so an example never drifts from the code.
package conf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
)

// loaders maps an example file to the loader of the binary that reads it.
var loaders = map[string]func(string) error{
	"kproxy.yaml":   func(p string) error { _, err := kproxy.LoadConfig(p); return err },
	"kmonitor.yaml": func(p string) error { _, err := kmonitor.LoadConfig(p); return err },
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
