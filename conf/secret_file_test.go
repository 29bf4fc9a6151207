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

// TestSecretTypedIntoAFileKeyNotShown: a secret written into a key that
// names a secret's file (password_file: hunter2, a private key's PEM in
// key_file) is no file: the start-up error names the file and the field
// and says the file cannot be read, without the value (it printed
// "open hunter2: no such file or directory", twice).
func TestSecretTypedIntoAFileKeyNotShown(t *testing.T) {
	dir := t.TempDir()
	const secret = "Xy8-s3cr3t-typed-here"
	kproxyLoad := func(p string) error { _, err := kproxy.LoadConfig(p); return err }
	ktransferLoad := func(p string) error { _, err := ktransfer.LoadConfig(p); return err }
	kmonitorLoad := func(p string) error { _, err := kmonitor.LoadConfig(p); return err }
	const kp = "broker_hosts: [10.1.4.17:5031]\n"
	const kt = "zk_hosts: [127.0.0.1:2181]\nzk_chroot: /mq/c\nmodule_enabled: [m]\n"
	const km = "base:\n clusters: [c1]\nc1:\n chroot: /mq/c1\n zk_hosts: [127.0.0.1:2181]\n"
	const noCert = "/nonexistent/client.pem"
	for _, tc := range []struct {
		file, doc, field string
		load             func(string) error
	}{
		{"kproxy.yaml", kp + "clients:\n - name: shop\n   secret_file: " + secret + "\n   topics: [t]\n", "clients[0].secret_file", kproxyLoad},
		{"kproxy.yaml", kp + "kafka: {sasl: {mechanism: PLAIN, user: u, password_file: " + secret + "}}\n", "kafka.sasl.password_file", kproxyLoad},
		{"kproxy.yaml", kp + "kafka: {tls: {enable: true, cert_file: " + noCert + ", key_file: " + secret + "}}\n", "kafka.tls.key_file", kproxyLoad},
		{"kproxy.yaml", kp + "tls_cert_file: " + noCert + "\ntls_key_file: " + secret + "\n", "tls_key_file", kproxyLoad},
		{"ktransfer.yaml", kt + "zk_auth: {user: kt, password_file: " + secret + "}\n", "zk_auth.password_file", ktransferLoad},
		{"ktransfer.yaml", kt + "kafka: {sasl: {mechanism: PLAIN, user: u, password_file: " + secret + "}}\n", "kafka.sasl.password_file", ktransferLoad},
		{"ktransfer.yaml", kt + "kafka: {tls: {enable: true, cert_file: " + noCert + ", key_file: " + secret + "}}\n", "kafka.tls.key_file", ktransferLoad},
		{"kmonitor.yaml", km + " zk_auth: {user: km, password_file: " + secret + "}\n", "c1.zk_auth.password_file", kmonitorLoad},
		{"kmonitor.yaml", km + " kafka: {sasl: {mechanism: PLAIN, user: u, password_file: " + secret + "}}\n", "c1.kafka.sasl.password_file", kmonitorLoad},
		{"kmonitor.yaml", km + " kafka: {tls: {enable: true, cert_file: " + noCert + ", key_file: " + secret + "}}\n", "c1.kafka.tls.key_file", kmonitorLoad},
	} {
		f := filepath.Join(dir, tc.file)
		if err := os.WriteFile(f, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		err := tc.load(f)
		if err == nil {
			t.Errorf("%s, %s: loaded", tc.file, tc.field)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, secret) {
			t.Errorf("%s, %s: the problem shows the value, which may be a secret: %v", tc.file, tc.field, err)
		}
		if !strings.Contains(msg, f+":") || !strings.Contains(msg, tc.field) {
			t.Errorf("%s: %v\ndoes not name the file and %s", tc.file, err, tc.field)
		}
	}
}
