package config

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
)

// FilesDigest is the hex HMAC-SHA-256 under a key drawn once per process
// of the names and contents of files (the empty names skipped; an
// unreadable file counts as empty: Validate reports it), or "" when there
// is none: a reload compares it to see a file rewritten in place
// (certificates, password files), which a restart alone reads again.
// Secrets are named by path in the files; only this digest of them is
// kept, never logged or shown, and keyed so that it could not confirm a
// guessed password if it were.
func FilesDigest(files ...string) string {
	sum := hmac.New(sha256.New, digestKey)
	n := 0
	for _, f := range files {
		if f == "" {
			continue
		}
		data, _ := ReadFile(f) // a named pipe is not waited on
		AddFile(sum, f, data)
		n++
	}
	if n == 0 {
		return ""
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// SecretsDigest is FilesDigest's form for secrets already read: the hex
// HMAC-SHA-256 of each, in order, or "" when there is none. Taken from the
// very bytes a component uses, a reload compares what is in use with what
// the files hold now (FilesDigest reads them again: a file rewritten
// between that read and the component's own goes unseen).
func SecretsDigest(secrets [][]byte) string {
	if len(secrets) == 0 {
		return ""
	}
	sum := hmac.New(sha256.New, digestKey)
	for _, s := range secrets {
		fmt.Fprintf(sum, "%d\x00", len(s))
		sum.Write(s)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// digestKey keys FilesDigest and SecretsDigest: random, one per process.
var digestKey = func() []byte {
	k := make([]byte, 32)
	rand.Read(k) // never fails (crypto/rand)
	return k
}()

// AddFile adds a file's name and data to sum.
func AddFile(sum hash.Hash, name string, data []byte) {
	fmt.Fprintf(sum, "%s\x00%d\x00", name, len(data))
	sum.Write(data)
}
