package conf

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kmonitor"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
)

// TestNamedPipeForANamedFileRefused: a key naming a file the loader reads
// (a secret's file, a CA, a certificate, a webhook signing secret) that
// names a named pipe held -check, the start and a ktransfer reload until
// something wrote to the pipe. Each is refused at once, naming the key and
// saying the file is not a regular one.
func TestNamedPipeForANamedFileRefused(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // whatever stays blocked on the pipe is let go
		for range 16 {
			if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
		}
	})
	modules := filepath.Join(dir, "modules")
	if err := os.Mkdir(modules, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	write("modules/m.yaml", "topic: t\nprotocol:\n uri: /x\nbackend_servers: [10.1.2.1:80]\n")
	write("modules/s.yaml", "topic: t\nprotocol:\n uri: /x\n signing_secrets: ["+fifo+"]\nbackend_servers: [10.1.2.1:80]\n")
	kt := "zk_chroot: /mq/c\nzk_hosts: [10.1.1.1:2181]\nmodule_conf_dir: " + modules + "\n"
	n := 0
	kproxyOf := func(extra string) func() error {
		n++
		f := write(fmt.Sprintf("kproxy-%d.yaml", n), "broker_hosts: [10.1.4.17:5031]\n"+extra)
		return func() error { _, err := kproxy.LoadConfig(f); return err }
	}
	ktransferOf := func(name, extra string) func() error {
		f := write(name, kt+extra)
		return func() error { _, err := ktransfer.LoadConfig(f); return err }
	}
	kmonitorOf := func(extra string) func() error {
		f := write("kmonitor.yaml", "base: {clusters: [c]}\nc:\n chroot: /mq/c\n zk_hosts: [10.1.1.1:2181]\n"+extra)
		return func() error { _, err := kmonitor.LoadConfig(f); return err }
	}
	cases := []struct {
		what string
		load func() error
		key  string
	}{
		{"kproxy clients secret_file", kproxyOf("clients: [{name: a, secret_file: " + fifo + ", topics: [t]}]\n"), "clients[0].secret_file"},
		{"kproxy kafka.sasl.password_file", kproxyOf("kafka: {sasl: {mechanism: PLAIN, user: u, password_file: " + fifo + "}}\n"), "kafka.sasl.password_file"},
		{"kproxy kafka.tls.ca_file", kproxyOf("kafka: {tls: {enable: true, ca_file: " + fifo + "}}\n"), "kafka.tls"},
		{"kproxy tls_cert_file", kproxyOf("tls_cert_file: " + fifo + "\ntls_key_file: " + write("key.pem", "x") + "\n"), "tls_cert_file"},
		{"ktransfer zk_auth.password_file", ktransferOf("a.yaml", "module_enabled: [m]\nzk_auth: {user: u, password_file: "+fifo+"}\n"), "zk_auth.password_file"},
		{"ktransfer kafka.sasl.password_file", ktransferOf("b.yaml", "module_enabled: [m]\nkafka: {sasl: {mechanism: PLAIN, user: u, password_file: "+fifo+"}}\n"), "kafka.sasl.password_file"},
		{"ktransfer signing_secrets", ktransferOf("c.yaml", "module_enabled: [s]\n"), "protocol.signing_secrets"},
		{"kmonitor zk_auth.password_file", kmonitorOf(" zk_auth: {user: u, password_file: " + fifo + "}\n"), "c.zk_auth.password_file"},
	}
	done := make([]chan error, len(cases))
	for i, tc := range cases {
		done[i] = make(chan error, 1)
		go func() { done[i] <- tc.load() }()
	}
	deadline := time.Now().Add(5 * time.Second)
	for i, tc := range cases {
		select {
		case err := <-done[i]:
			if err == nil || !strings.Contains(err.Error(), tc.key) || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("%s: %v\nlacks %q and \"not a regular file\"", tc.what, err, tc.key)
			}
		case <-time.After(time.Until(deadline)):
			t.Errorf("%s: the loader did not return within 5 s", tc.what)
		}
	}
}
