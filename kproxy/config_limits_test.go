package kproxy_test

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// writeConfig writes a kproxy.yaml for brokers with the lines given.
func writeConfig(t *testing.T, brokers, lines string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	body := fmt.Sprintf("port: 0\nlisten_host: 127.0.0.1\nadmin_addr: \"\"\nbroker_hosts: [%s]\n%s\n", brokers, lines)
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestCheckRefusesWhatStartRefuses attacks DESIGN's config promise:
// Validate (and so -check) reports every problem, naming file, field and
// value. Values franz-go refuses, or that overflow a duration or an
// int32, were accepted by -check and failed the start with kgo's words
// (or, negative once converted, were silently something else): each is
// refused by LoadConfig with the key, the value and the allowed range. The
// bounds themselves start.
func TestCheckRefusesWhatStartRefuses(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	brokers := c.ListenAddrs()[0]
	long := strings.Repeat("x", 300)
	for _, tc := range []struct{ line, want string }{
		{"produce_timeout_ms: 50", "produce_timeout_ms: must be 100..1073739323, got 50"},
		{"produce_timeout_ms: 10000000000000", "produce_timeout_ms: must be 100..1073739323, got 10000000000000"},
		{"linger_ms: 61000", "linger_ms: must be 0..60000 (a minute), got 61000"},
		{"max_message_bytes: 100", "max_message_bytes: must be 512..104857600 (100 MiB), got 100"},
		{"max_message_bytes: 200000000", "max_message_bytes: must be 512..104857600 (100 MiB), got 200000000"},
		{"max_message_bytes: 3000000000", "max_message_bytes: must be 512..104857600 (100 MiB), got 3000000000"},
		{"kafka:\n  metadata_refresh_ms: 3700000", "kafka.metadata_refresh_ms: must be 1000..3600000 (1 s to 1 h), got 3700000"},
		{"kafka:\n  client_id: " + long, "kafka.client_id: must be at most 256 bytes (it has 300), got \"" + long + "\""},
		{"kafka:\n  dial_timeout_ms: 9999999999999", "kafka.dial_timeout_ms: must be 1..2147483647, got 9999999999999"},
		{"shutdown_timeout_ms: 9999999999999", "shutdown_timeout_ms: must be 1..2147483647 (about 24.8 days), got 9999999999999"},
		{"read_timeout_ms: 9999999999999", "read_timeout_ms: must be 1..2147483647 (about 24.8 days), got 9999999999999"},
		{"write_timeout_ms: 9999999999999", "write_timeout_ms: must be 1..2147483647 (about 24.8 days), got 9999999999999"},
		{"idle_timeout_ms: 9999999999999", "idle_timeout_ms: must be 1..2147483647 (about 24.8 days), got 9999999999999"},
		{"max_body_bytes_in_flight: 0", "max_body_bytes_in_flight: must be >= 1, got 0"},
	} {
		f := writeConfig(t, brokers, tc.line)
		_, err := kproxy.LoadConfig(f)
		if err == nil || !strings.Contains(err.Error(), f+": "+tc.want) {
			t.Errorf("%.60q: LoadConfig: %v; want %q", tc.line, err, f+": "+tc.want)
		}
	}
	// The bounds start.
	for _, line := range []string{
		"produce_timeout_ms: 100", "produce_timeout_ms: 1073739323", "linger_ms: 60000",
		"max_message_bytes: 512", "max_message_bytes: 104857600",
		"kafka:\n  metadata_refresh_ms: 3600000\n  client_id: " + strings.Repeat("x", 256),
		"shutdown_timeout_ms: 2147483647\nread_timeout_ms: 2147483647\nwrite_timeout_ms: 2147483647\nidle_timeout_ms: 2147483647",
	} {
		cfg, err := kproxy.LoadConfig(writeConfig(t, brokers, line))
		if err != nil {
			t.Errorf("%.60q: LoadConfig: %v", line, err)
			continue
		}
		srv, err := kproxy.New(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Errorf("%.60q: New: %v", line, err)
			continue
		}
		srv.Close()
	}
}

// TestKeysWithoutEffectRefused: as kafka.tls keys with enable: false, a
// key that is set and can have no effect is a start-up error (a key kept
// only so that 2015 files load, producer_num, is noted in the log).
func TestKeysWithoutEffectRefused(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"trusted_proxies: [10.0.0.0/8]", "trusted_proxies: has no effect without ip in ext_headers"},
		{"transactional_producers: 0\ntransactional_id: billing-kproxy", "transactional_id: has no effect with transactional_producers: 0"},
	} {
		f := writeConfig(t, "127.0.0.1:9092", tc.line)
		if strings.HasPrefix(tc.line, "admin_addr:") { // in place of writeConfig's
			f = filepath.Join(t.TempDir(), "kproxy.yaml")
			os.WriteFile(f, []byte("port: 0\nbroker_hosts: [127.0.0.1:9092]\n"+tc.line+"\n"), 0o644)
		}
		if _, err := kproxy.LoadConfig(f); err == nil || !strings.Contains(err.Error(), f+": "+tc.want) {
			t.Errorf("%q: LoadConfig: %v; want %q", tc.line, err, tc.want)
		}
	}
	for _, line := range []string{"ext_headers: [ip]\ntrusted_proxies: [10.0.0.0/8]", "transactional_id: billing-kproxy"} {
		if _, err := kproxy.LoadConfig(writeConfig(t, "127.0.0.1:9092", line)); err != nil {
			t.Errorf("%q: LoadConfig: %v", line, err)
		}
	}
}

// TestListenersOnOnePortRefused: the HTTP port, grpc_port and admin_addr
// are three listeners; two of them on one port of one address can never
// both start (address already in use), so -check refuses it too, naming
// the keys. The default admin_addr (a file that does not set it) moves to
// a free port instead (TestDefaultAdminPortTakenStillStarts): a 2015 file
// with port: 5040 loads.
func TestListenersOnOnePortRefused(t *testing.T) {
	for _, tc := range []struct{ lines, want string }{
		{"port: 5040\nadmin_addr: 127.0.0.1:5040", `admin_addr: must not be the address of port 5040 (listen_host ""), got "127.0.0.1:5040"`},
		{"port: 5041\nlisten_host: 127.0.0.1\nadmin_addr: 127.0.0.1:5041", `admin_addr: must not be the address of port 5041 (listen_host "127.0.0.1"), got "127.0.0.1:5041"`},
		{"grpc_port: 5040\nadmin_addr: 127.0.0.1:5040", `admin_addr: must not be the address of grpc_port 5040 (listen_host ""), got "127.0.0.1:5040"`},
		{"port: 5041\nadmin_addr: 0.0.0.0:5041", `admin_addr: must not be the address of port 5041 (listen_host ""), got "0.0.0.0:5041"`},
		{"port: 5041\nlisten_host: 10.1.4.17\nadmin_addr: :5041", `admin_addr: must not be the address of port 5041 (listen_host "10.1.4.17"), got ":5041"`},
	} {
		f := filepath.Join(t.TempDir(), "kproxy.yaml")
		os.WriteFile(f, []byte("broker_hosts: [10.1.4.17:5031]\n"+tc.lines+"\n"), 0o644)
		if _, err := kproxy.LoadConfig(f); err == nil || !strings.Contains(err.Error(), f+": "+tc.want) {
			t.Errorf("%q: LoadConfig: %v; want %q", tc.lines, err, tc.want)
		}
	}
	for _, lines := range []string{
		"port: 5030",                    // the defaults
		"port: 5040", "grpc_port: 5040", // the default admin_addr moves
		"port: 5041\nlisten_host: 10.1.4.17\nadmin_addr: 127.0.0.1:5041",
		"port: 0\nadmin_addr: 127.0.0.1:0",
	} {
		f := filepath.Join(t.TempDir(), "kproxy.yaml")
		os.WriteFile(f, []byte("broker_hosts: [10.1.4.17:5031]\n"+lines+"\n"), 0o644)
		if _, err := kproxy.LoadConfig(f); err != nil {
			t.Errorf("%q: LoadConfig: %v", lines, err)
		}
	}
}

// TestDefaultAdminPortTakenStillStarts attacks DESIGN's first promise: a
// kproxy.yaml in the 2015 form (which has no admin_addr) loads and runs
// unchanged. The admin listener is new, on 127.0.0.1:5040 by default; a
// second kproxy on the host (port 5031 beside 5030), or any process
// holding that port, must not stop a 2015 file's start: the default port
// taken, the admin listener takes a free one (as ktransfer's does). An
// admin_addr the file sets must still be free.
func TestDefaultAdminPortTakenStillStarts(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	def := kproxy.DefaultConfig().AdminAddr
	if ln, err := net.Listen("tcp", def); err == nil { // else taken already
		defer ln.Close()
	}
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	doc := fmt.Sprintf("log_level: 4\nport: 0\nread_timeout_ms: 100\nwrite_timeout_ms: 100\nreq_pool_size: 10240\n"+
		"producer_num: 1\nmax_request_size_bytes: 10485760\nbroker_hosts:\n - %s\nlisten_host: 127.0.0.1\n", c.ListenAddrs()[0])
	os.WriteFile(f, []byte(doc), 0o644)
	cfg, err := kproxy.LoadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := kproxy.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("a 2015 file with %s taken: %v", def, err)
	}
	defer srv.Close()
	if a := srv.AdminAddr(); a == nil || a.String() == def || !strings.HasPrefix(a.String(), "127.0.0.1:") {
		t.Errorf("admin listener on %v; want a free port of 127.0.0.1", a)
	}
	// Set in the file, a taken admin_addr stops the start.
	os.WriteFile(f, []byte(doc+"admin_addr: "+def+"\n"), 0o644)
	if cfg, err = kproxy.LoadConfig(f); err != nil {
		t.Fatal(err)
	}
	if srv, err := kproxy.New(cfg, slog.New(slog.DiscardHandler)); err == nil {
		srv.Close()
		t.Errorf("admin_addr %s set in the file and taken: started", def)
	} else if !strings.Contains(err.Error(), "(admin_addr)") {
		t.Errorf("admin_addr taken: %v", err)
	}
}

// TestListenersOnOnePortRefusedWhateverTheSpelling: listen_host may be
// "localhost" (as admin_addr's host may): the HTTP port on localhost and
// admin_addr on 127.0.0.1, or the reverse, are one address to the kernel
// (Go listens on localhost's IPv4 address), and an IPv4 address written
// IPv4-mapped is that address. -check said ok; the start then stopped:
// "listen on localhost:5030 (admin_addr): ... address already in use".
func TestListenersOnOnePortRefusedWhateverTheSpelling(t *testing.T) {
	for _, tc := range []struct{ lines, want string }{
		{"port: 5030\nlisten_host: 127.0.0.1\nadmin_addr: localhost:5030", `admin_addr: must not be the address of port 5030 (listen_host "127.0.0.1"), got "localhost:5030"`},
		{"port: 5030\nlisten_host: localhost\nadmin_addr: 127.0.0.1:5030", `admin_addr: must not be the address of port 5030 (listen_host "localhost"), got "127.0.0.1:5030"`},
		{"port: 5030\nlisten_host: \"::ffff:127.0.0.1\"\nadmin_addr: 127.0.0.1:5030", `admin_addr: must not be the address of port 5030 (listen_host "::ffff:127.0.0.1"), got "127.0.0.1:5030"`},
	} {
		f := filepath.Join(t.TempDir(), "kproxy.yaml")
		os.WriteFile(f, []byte("broker_hosts: [10.1.4.17:5031]\n"+tc.lines+"\n"), 0o644)
		if _, err := kproxy.LoadConfig(f); err == nil || !strings.Contains(err.Error(), f+": "+tc.want) {
			t.Errorf("%q: LoadConfig: %v; want %q", tc.lines, err, tc.want)
		}
	}
	// localhost is not ::1 to Go's listener: both start.
	f := filepath.Join(t.TempDir(), "kproxy.yaml")
	os.WriteFile(f, []byte("broker_hosts: [10.1.4.17:5031]\nport: 5030\nlisten_host: \"::1\"\nadmin_addr: localhost:5030\n"), 0o644)
	if _, err := kproxy.LoadConfig(f); err != nil {
		t.Errorf("listen_host ::1, admin_addr localhost: %v", err)
	}
}

// A spool_dir that names a file, or a directory kproxy may not write to,
// is refused by LoadConfig (and so -check and the start) with the file,
// the key and the value, not found out when Kafka first goes away.
func TestCheckRefusesSpoolDirNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "spool")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := writeConfig(t, "127.0.0.1:9", "spool_dir: "+file)
	_, err := kproxy.LoadConfig(f)
	want := fmt.Sprintf("%s: spool_dir: ", f)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not a directory") || !strings.Contains(err.Error(), fmt.Sprintf("got %q", file)) {
		t.Errorf("LoadConfig with spool_dir a file: %v; want %q ... not a directory ..., got %q", err, want, file)
	}
	// Missing: created at start.
	f = writeConfig(t, "127.0.0.1:9", "spool_dir: "+filepath.Join(t.TempDir(), "new", "spool"))
	if _, err := kproxy.LoadConfig(f); err != nil {
		t.Errorf("LoadConfig with spool_dir missing: %v", err)
	}
}

// TestCheckRefusesWhatOnlyFailedAtStart: values -check passed whose
// mistake showed only at run time, or as something else: a quoted yes/no
// word read as a boolean (kafka.tls.insecure_skip_verify: 'Y' turned
// certificate checks off), an admin_addr host with a space (a failed
// look-up at the start).
func TestCheckRefusesWhatOnlyFailedAtStart(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"auto_create_topics: 'no'", `auto_create_topics: must be true or false, got "no" in quotes (a string: write it without them)`},
		{"kafka: {tls: {enable: true, insecure_skip_verify: 'Y'}}", `kafka.tls.insecure_skip_verify: must be true or false, got "Y" in quotes`},
		{"admin_addr: 'foo bar:80'", `admin_addr: must be host:port, or empty to turn the admin listener off, got "foo bar:80"`},
	} {
		f := writeConfig(t, "127.0.0.1:9092", tc.line)
		if strings.HasPrefix(tc.line, "admin_addr:") { // in place of writeConfig's
			f = filepath.Join(t.TempDir(), "kproxy.yaml")
			os.WriteFile(f, []byte("port: 0\nbroker_hosts: [127.0.0.1:9092]\n"+tc.line+"\n"), 0o644)
		}
		if _, err := kproxy.LoadConfig(f); err == nil || !strings.Contains(err.Error(), f+":") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nlacks %q", tc.line, err, tc.want)
		}
	}
}
