package kproxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"os"
	"path"
	"strings"
)

// Client is a named client allowed to write to some topics.
type Client struct {
	Name string `yaml:"name"`
	// Secret, or SecretFile: a file holding it (trailing white space is
	// ignored) that only its owner may read.
	Secret     string   `yaml:"secret"`
	SecretFile string   `yaml:"secret_file"`
	Topics     []string `yaml:"topics"` // names or path.Match patterns ("billing.*")
}

// access decides who may write where. Secrets are kept as SHA-256 sums
// and compared in constant time; they are never logged.
type access struct {
	allowed []string // topics_allowed; empty: any topic
	clients map[string]clientRule
}

type clientRule struct {
	sum    [32]byte
	topics []string
}

func newAccess(cfg Config) (*access, error) {
	a := &access{allowed: cfg.TopicsAllowed}
	if len(cfg.Clients) == 0 {
		return a, nil
	}
	a.clients = map[string]clientRule{}
	for _, c := range cfg.Clients {
		secret := c.Secret
		if c.SecretFile != "" {
			st, err := os.Stat(c.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("clients %s: secret_file: %w", c.Name, err)
			}
			if st.Mode().Perm()&0o077 != 0 {
				return nil, fmt.Errorf("clients %s: secret_file %s: readable by group or others (mode %v); chmod 600 it", c.Name, c.SecretFile, st.Mode().Perm())
			}
			b, err := os.ReadFile(c.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("clients %s: secret_file: %w", c.Name, err)
			}
			secret = strings.TrimRight(string(b), " \t\r\n")
		}
		if secret == "" {
			return nil, fmt.Errorf("clients %s: empty secret", c.Name)
		}
		a.clients[c.Name] = clientRule{sum: sha256.Sum256([]byte(secret)), topics: c.Topics}
	}
	return a, nil
}

// active reports whether any rule applies (if not, check is not needed).
func (a *access) active() bool { return len(a.allowed) > 0 || a.clients != nil }

// check returns 0 when the request may write to topic, else the status
// (401 or 403) and the reason. auth is the Authorization header.
func (a *access) check(auth []byte, topic string) (int, string) {
	if len(a.allowed) > 0 && !matchAny(a.allowed, topic) {
		return 403, "topic not in topics_allowed"
	}
	if a.clients == nil {
		return 0, ""
	}
	name, secret, ok := basicAuth(auth)
	if !ok {
		return 401, "credentials required (Authorization: Basic)"
	}
	rule, known := a.clients[name]
	sum := sha256.Sum256([]byte(secret))
	// Compare even for an unknown name, so that timing tells nothing.
	if subtle.ConstantTimeCompare(sum[:], rule.sum[:]) != 1 || !known {
		return 401, "wrong client name or secret"
	}
	if !matchAny(rule.topics, topic) {
		return 403, "topic not allowed for this client"
	}
	return 0, ""
}

func matchAny(patterns []string, topic string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, topic); ok {
			return true
		}
	}
	return false
}

func basicAuth(h []byte) (name, secret string, ok bool) {
	const prefix = "Basic "
	if len(h) < len(prefix) || !strings.EqualFold(string(h[:len(prefix)]), prefix) {
		return "", "", false
	}
	dec, err := base64.StdEncoding.DecodeString(string(h[len(prefix):]))
	if err != nil {
		return "", "", false
	}
	name, secret, ok = strings.Cut(string(dec), ":")
	return name, secret, ok
}
