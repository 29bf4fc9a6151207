package kproxy

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

// TestSecretsFromTheBoundedRead: a reload reads kproxy.yaml and the
// secret_file of each client within a bound (a mount gone silent must not
// hold it, nor the stop after it), then made the rules from a second read
// of each secret_file, outside that bound and under the reload's lock: a
// mount that stopped answering between the two held the reload, and the
// process's exit waiting for it, for as long as the mount stayed silent.
// The rules are made from the read LoadConfig made; the secret file gone
// since (the stand-in for a read that would not return) changes nothing.
func TestSecretsFromTheBoundedRead(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "billing.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "kproxy.yaml")
	if err := os.WriteFile(file, []byte("broker_hosts: [127.0.0.1:1]\nclients:\n  - name: billing\n    secret_file: "+secret+"\n    topics: [billing]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(secret); err != nil {
		t.Fatal(err)
	}
	a, err := newAccess(cfg, nil)
	if err != nil {
		t.Fatalf("the rules read a secret_file LoadConfig had read: %v", err)
	}
	if rule, v := a.authenticate([]byte("Basic " + base64.StdEncoding.EncodeToString([]byte("billing:s3cret")))); v.code != 0 || rule == nil || rule.name != "billing" {
		t.Fatalf("billing with the secret LoadConfig read: %d %s, want let through", v.code, v.reason)
	}
}
