package ktransfer

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

// TestSigningSecretComparedAsUsed: a reload compares a module's signing
// secrets with those of its running signer. The digest was taken when
// the file was loaded, and the signer built from a read of its own later
// (a Kafka look-up apart, up to 15 s): a secret file rotated between the
// two made the next reload with nothing changed restart the module (its
// partitions handed over, records pushed again), and a rotation rolled
// back (the file as first loaded) was taken for no change while the
// signer kept the other key — every push refused by the backends. The
// signer now takes the keys the load read (no second read, which a stop
// could not leave either), and the comparison is of those.
func TestSigningSecretComparedAsUsed(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "signing.key")
	k1, k2 := testSecret(t), testSecret(t)
	write := func(k string) {
		t.Helper()
		if err := os.WriteFile(secret, []byte(k+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "m.yaml")
	doc := "topic: t\nbackend_servers: [127.0.0.1:1]\nprotocol:\n uri: /push\n signing_secrets: [" + secret + "]\n"
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	load := func() Module {
		t.Helper()
		m, err := LoadModule(file)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	write(k1)
	running := load()
	write(k2) // rotated between the load and the module's start
	p, err := pusherFor(&running)
	if err != nil {
		t.Fatal(err)
	}
	want, err := decodeSecret(k1)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.signer.keys) != 1 || !bytes.Equal(p.signer.keys[0], want) {
		t.Fatal("the signer does not hold the key the load read: it read the file again")
	}
	if sameModule(running, load()) {
		t.Error("the file holds another key than the signer uses, and the reload takes the module for unchanged")
	}
	write(k1) // rolled back
	if !sameModule(running, load()) {
		t.Error("the file holds the key the signer uses, and the reload takes the module for changed")
	}
}

func testSecret(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}
