package kproxy

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

// TestRestartKeysSeeFilesRewrittenInPlace: the certificate and key files
// tls_cert_file and tls_key_file name are read at start only. Renewed in
// place (the same paths, as certbot and cert-manager do), a reload must
// say they need a restart; before, it compared the paths only and said
// nothing, while kproxy went on serving the old certificate.
func TestRestartKeysSeeFilesRewrittenInPlace(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	install := func(s *testcert.Set) {
		for src, dst := range map[string]string{s.ServerCert: cert, s.ServerKey: key} {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(testcert.New(t))
	file := filepath.Join(dir, "kproxy.yaml")
	if err := os.WriteFile(file, []byte("broker_hosts: [127.0.0.1:1]\ntls_cert_file: "+cert+"\ntls_key_file: "+key+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	load := func() Config {
		cfg, err := LoadConfig(file)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	running := load()
	if got, _ := restartKeys(running, load()); got != nil {
		t.Errorf("the same files read again: %v need a restart, want none", got)
	}
	install(testcert.New(t))
	if got, want := first(restartKeys(running, load())), []string{"tls_cert_file", "tls_key_file"}; !slices.Equal(got, want) {
		t.Errorf("certificate and key renewed in place: %v need a restart, want %v", got, want)
	}
}

func first[A, B any](a A, _ B) A { return a }

// A reload changing producer_num (kept only so that 2015 files load) or a
// spool key while spool_dir is unset says the key has no effect: before,
// it said the key needed a restart, which would change nothing either.
func TestReloadIneffectiveKeysNeedNoRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kproxy.yaml")
	load := func(body string) Config {
		if err := os.WriteFile(file, []byte("broker_hosts: [127.0.0.1:1]\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadConfig(file)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	running := load("producer_num: 1\n")
	restart, ineffective := restartKeys(running, load("producer_num: 4\nspool_after_ms: 500\nreq_pool_size: 64\n"))
	if want := []string{"req_pool_size"}; !slices.Equal(restart, want) {
		t.Errorf("need a restart: %v, want %v", restart, want)
	}
	if want := []string{"producer_num", "spool_after_ms"}; !slices.Equal(ineffective, want) {
		t.Errorf("without effect: %v, want %v", ineffective, want)
	}
	// The line removed (the start warned it had no effect).
	restart, ineffective = restartKeys(load("spool_after_ms: 500\n"), load(""))
	if len(restart) != 0 || !slices.Equal(ineffective, []string{"spool_after_ms"}) {
		t.Errorf("spool_after_ms removed without spool_dir: restart %v, without effect %v; want none and [spool_after_ms]", restart, ineffective)
	}
}
