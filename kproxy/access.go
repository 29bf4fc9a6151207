package kproxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"math"
	"path"
	"strings"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"golang.org/x/time/rate"
)

// Client is a named client allowed to write to some topics.
type Client struct {
	Name string `yaml:"name"`
	// Secret, or SecretFile: a file holding it (trailing white space is
	// ignored) that only its owner may read.
	Secret     string   `yaml:"secret"`
	SecretFile string   `yaml:"secret_file"`
	Topics     []string `yaml:"topics"` // names or path.Match patterns ("billing.*")
	// RateLimit is the requests per second the client may send on average
	// (0: no limit), Burst how many above it at once (default: RateLimit).
	// Past them the answer is 429 with Retry-After.
	RateLimit float64 `yaml:"rate_limit"`
	Burst     int     `yaml:"burst"`
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
	limit  *rate.Limiter // nil: no rate limit
}

func newAccess(cfg Config) (*access, error) {
	a := &access{allowed: cfg.TopicsAllowed}
	if len(cfg.Clients) == 0 {
		return a, nil
	}
	a.clients = map[string]clientRule{}
	for _, c := range cfg.Clients {
		secret, err := config.SecretOf(c.Secret, c.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("clients %s: %w", c.Name, err)
		}
		rule := clientRule{sum: sha256.Sum256([]byte(secret)), topics: c.Topics}
		if c.RateLimit > 0 {
			burst := c.Burst
			if burst == 0 {
				burst = max(1, int(math.Ceil(c.RateLimit)))
			}
			rule.limit = rate.NewLimiter(rate.Limit(c.RateLimit), burst)
		}
		a.clients[c.Name] = rule
	}
	return a, nil
}

// active reports whether any rule applies (if not, check is not needed).
func (a *access) active() bool { return len(a.allowed) > 0 || a.clients != nil }

// verdict is access's answer: code 0 lets the request through, else the
// status (401, 403, 429) with its reason, and for 429 the seconds after
// which the client may try again.
type verdict struct {
	code       int
	reason     string
	retryAfter int
}

// check decides whether the request may write to topic; auth is the
// Authorization header. A request refused for its topic does not count
// against the client's rate.
func (a *access) check(auth []byte, topic string, now time.Time) verdict {
	if len(a.allowed) > 0 && !matchAny(a.allowed, topic) {
		return verdict{code: 403, reason: "topic not in topics_allowed"}
	}
	if a.clients == nil {
		return verdict{}
	}
	name, secret, ok := basicAuth(auth)
	if !ok {
		return verdict{code: 401, reason: "credentials required (Authorization: Basic)"}
	}
	rule, known := a.clients[name]
	sum := sha256.Sum256([]byte(secret))
	// Compare even for an unknown name, so that timing tells nothing.
	if subtle.ConstantTimeCompare(sum[:], rule.sum[:]) != 1 || !known {
		return verdict{code: 401, reason: "wrong client name or secret"}
	}
	if !matchAny(rule.topics, topic) {
		return verdict{code: 403, reason: "topic not allowed for this client"}
	}
	if rule.limit != nil {
		r := rule.limit.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return verdict{code: 429, reason: "rate limit of client " + name + " exceeded", retryAfter: int(math.Ceil(d.Seconds()))}
		}
	}
	return verdict{}
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
