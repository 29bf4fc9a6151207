package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ReadSecretFile returns the secret held in path, without trailing white
// space. The file must be readable by its owner only (chmod 600), so that
// a secret kept out of the configuration is not readable by everyone who
// can read the configuration.
func ReadSecretFile(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", hiddenPathError{err}
	}
	if !st.Mode().IsRegular() { // before its mode: chmod would not help
		return "", fmt.Errorf("%s: not a regular file (%s)", path, fileKind(st.Mode()))
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by group or others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := ReadFile(path) // a regular file: a named pipe would hold the start
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), " \t\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// SecretOf returns the secret given inline (value) or in a file (file):
// exactly one of them must be set. The error names neither the secret nor
// a part of it.
func SecretOf(value, file string) (string, error) {
	switch {
	case value != "" && file != "":
		return "", fmt.Errorf("set the secret inline or in a file, not both")
	case file != "":
		return ReadSecretFile(file)
	case value == "":
		return "", fmt.Errorf("no secret set")
	}
	return value, nil
}

// Secret records a problem under prefix unless exactly one of the keys
// <name> (value) and <name>_file (file) is set, and the file is usable.
func (p *Problems) Secret(prefix, name, value, file string) {
	if (value == "") == (file == "") {
		p.Add(prefix, "needs exactly one of "+name+" and "+name+"_file")
	} else if _, err := SecretOf(value, file); errors.As(err, new(hiddenPathError)) {
		p.Add(prefix+"."+name+"_file", err.Error())
	} else if err != nil {
		p.Addf(prefix+"."+name+"_file", file, "%v", err)
	}
}

// CheckSecretFile checks that path, the value of a key naming a secret's
// file (password_file, secret_file, key_file), names a file. Its error
// does not show path: a secret typed where its file's path belongs
// ("password_file: hunter2") is not printed; a file that exists is named
// by the other problems.
func CheckSecretFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return hiddenPathError{err}
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("names no regular file (value not shown: it may be a secret): %s", fileKind(st.Mode()))
	}
	return nil
}

// LoadX509KeyPair is tls.LoadX509KeyPair, reading the files with ReadFile:
// a named pipe given for either is refused, not waited on.
func LoadX509KeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, hiddenPathError{err}
	}
	return tls.X509KeyPair(cert, key)
}

// IsUnreadableSecret tells whether err is a secret file that could not be
// read (said without its name): LoadX509KeyPair's for the key.
func IsUnreadableSecret(err error) bool { return errors.As(err, new(hiddenPathError)) }

// hiddenPathError is a file that cannot be read, said without its name.
type hiddenPathError struct{ err error }

func (e hiddenPathError) Error() string {
	reason := e.err
	var pe *fs.PathError
	if errors.As(e.err, &pe) {
		reason = pe.Err // without the path
	}
	return "cannot read the file it names (value not shown: it may be a secret): " + reason.Error()
}

func (e hiddenPathError) Unwrap() error { return e.err }
