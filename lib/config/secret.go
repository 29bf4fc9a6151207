package config

import (
	"fmt"
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
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by group or others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
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
	} else if _, err := SecretOf(value, file); err != nil {
		p.Addf(prefix+"."+name+"_file", file, "%v", err)
	}
}
