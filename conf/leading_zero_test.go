package conf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestLeadingZeroIntegersRefused: YAML reads an integer written with a
// leading 0 as octal, so read_timeout_ms: 0100 was 64 ms and port: 05030
// was port 2584, loaded without a word (the 2015 suite, and anyone
// reading the file, take them as 100 and 5030). Such a value is refused,
// naming the file, the line, the key and the value as written; 0 itself,
// and octal or hexadecimal written as such (0o144, 0x64), still load.
func TestLeadingZeroIntegersRefused(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	f := write("kproxy.yaml", "port: 05030\nread_timeout_ms: 0100\nbroker_hosts: [10.1.4.17:5031]\n")
	_, err := kproxy.LoadConfig(f)
	for _, want := range []string{f + ":1: port: ", `"05030"`, f + ":2: read_timeout_ms: ", `"0100"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("kproxy: %v\nlacks %q", err, want)
		}
	}
	f = write("m.yaml", "topic: t\nprotocol: {uri: /x}\nwindow_size: -0200\nbackend_servers: [10.1.2.1:80]\n")
	if _, err := ktransfer.LoadModule(f); err == nil || !strings.Contains(err.Error(), f+":3: window_size: ") || !strings.Contains(err.Error(), `"-0200"`) {
		t.Errorf("module: %v", err)
	}
	f = write("kmonitor.yaml", "base: {clusters: [c]}\nhttp_server: {port: 055325}\nc: {chroot: /mq/c, zk_hosts: [10.1.1.1:2181]}\n")
	if _, err := kmonitor.LoadConfig(f); err == nil || !strings.Contains(err.Error(), f+":2: http_server.port: ") || !strings.Contains(err.Error(), `"055325"`) {
		t.Errorf("kmonitor: %v", err)
	}
	// A float key takes an integer too, read as octal alike: rate_limit:
	// 0100 loaded as 64 requests per second, burst: 010 beside it refused.
	f = write("rl.yaml", "broker_hosts: [10.1.4.17:5031]\nclients:\n - {name: shop, secret: s3cret-value, topics: [a], rate_limit: 0100}\n")
	if _, err := kproxy.LoadConfig(f); err == nil || !strings.Contains(err.Error(), f+":3: clients[0].rate_limit: ") || !strings.Contains(err.Error(), `"0100"`) {
		t.Errorf("kproxy rate_limit: %v", err)
	}
	f = write("rlm.yaml", "topic: t\nprotocol: {uri: /x}\nrate_limit: 010\nbackend_servers: [10.1.2.1:80]\n")
	if _, err := ktransfer.LoadModule(f); err == nil || !strings.Contains(err.Error(), f+":3: rate_limit: ") || !strings.Contains(err.Error(), `"010"`) {
		t.Errorf("module rate_limit: %v", err)
	}
	f = write("ok.yaml", "port: 0\nread_timeout_ms: 0o144\nwrite_timeout_ms: 0x64\nbroker_hosts: [10.1.4.17:5031]\n")
	if cfg, err := kproxy.LoadConfig(f); err != nil || cfg.Port != 0 || cfg.ReadTimeoutMs != 100 || cfg.WriteTimeoutMs != 100 {
		t.Errorf("0, 0o144 and 0x64: port %d, read_timeout_ms %d, write_timeout_ms %d, %v; want 0, 100, 100, nil",
			cfg.Port, cfg.ReadTimeoutMs, cfg.WriteTimeoutMs, err)
	}
}

// TestLeadingZeroIntegersReadTheSameLoad: an integer with a leading 0 whose
// octal reading is its decimal one (00 to 07, zero-padded) loaded right
// before leading zeros were refused, as 08 and 09 still do (YAML reads
// them as decimal): such a file must keep loading, with the same values.
func TestLeadingZeroIntegersReadTheSameLoad(t *testing.T) {
	f := filepath.Join(t.TempDir(), "m.yaml")
	body := "topic: t\nprotocol: {uri: /x}\nworker_num: 04\nmax_retry_times: 00\nbreaker_failures: 09\nbackend_servers: [10.1.2.1:80]\n"
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := ktransfer.LoadModule(f)
	if err != nil || m.WorkerNum != 4 || m.MaxRetryTimes != 0 || m.BreakerFailures != 9 {
		t.Fatalf("worker_num: 04, max_retry_times: 00, breaker_failures: 09: %d, %d, %d, %v; want 4, 0, 9, nil",
			m.WorkerNum, m.MaxRetryTimes, m.BreakerFailures, err)
	}
}
