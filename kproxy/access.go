package kproxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"math"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
)

// Client is a named client allowed to write to some topics.
type Client struct {
	Name string `yaml:"name"`
	// Secret, or SecretFile: a file holding it (trailing white space is
	// ignored) that only its owner may read.
	Secret     string   `yaml:"secret"`
	SecretFile string   `yaml:"secret_file"`
	Topics     []string `yaml:"topics"` // names or path.Match patterns ("billing.*")
	// RateLimit is the records per second the client may send on average
	// (0: no limit), Burst the most it may send at once (default:
	// RateLimit rounded up).
	// Past them the answer is 429 with Retry-After. A request refused
	// as a whole with 503 after it was counted gives its records back
	// (giveBack).
	RateLimit float64 `yaml:"rate_limit"`
	Burst     int     `yaml:"burst"`

	// loaded is the SHA-256 sum of the secret as LoadConfig read it
	// (inline or from SecretFile), within the bound on reading the
	// configuration's files: the rules are made from it, not from a read
	// of their own that a mount gone silent could hold unbounded. Unset
	// (read false) for a Config not made by LoadConfig.
	loaded [32]byte
	read   bool
}

// access decides who may write where. Secrets are kept as SHA-256 sums
// and compared in constant time; they are never logged.
type access struct {
	allowed []string // topics_allowed; empty: any topic
	clients map[string]*clientRule
}

type clientRule struct {
	name   string
	sum    [32]byte
	topics []string
	limit  *bucket // nil: no rate limit
}

// newAccess builds the rules of cfg. A client of prev (the rules a reload
// replaces; nil at start) whose rate_limit and burst are unchanged keeps
// its bucket: a reload neither refills a client's burst nor forgets what
// it sent. One whose limits changed keeps it too, under the new limits
// (holding what it held, at most the new burst), once newAccess cannot
// fail any more: the caller stores the rules at once.
func newAccess(cfg Config, prev *access) (*access, error) {
	a := &access{allowed: cfg.TopicsAllowed}
	if len(cfg.Clients) == 0 {
		return a, nil
	}
	a.clients = map[string]*clientRule{}
	var limits []func() // applied once nothing can refuse the rules
	for _, c := range cfg.Clients {
		sum := c.loaded
		if !c.read {
			secret, err := config.SecretOf(c.Secret, c.SecretFile)
			if err != nil {
				return nil, fmt.Errorf("clients %s: %w", c.Name, err)
			}
			sum = sha256.Sum256([]byte(secret))
		}
		rule := &clientRule{name: c.Name, sum: sum, topics: c.Topics}
		if c.RateLimit > 0 {
			burst := c.Burst
			if burst == 0 {
				// Capped where a float64 still holds every integer: a
				// larger rate did not fit an int (converted, it gave
				// math.MinInt64, and so a burst of 1).
				burst = max(1, int(min(math.Ceil(c.RateLimit), 1<<53)))
			}
			if old := prev.client(c.Name); old != nil && old.limit != nil {
				// Its bucket goes on, under the new limits once the
				// rules are in force: lowering a limit to throttle a
				// client does not hand it a full burst, and a request
				// checked by the rules before takes and gives back
				// where the client's next requests take.
				rule.limit = old.limit
				limits = append(limits, func() { old.limit.setLimits(c.RateLimit, burst, time.Now()) })
			} else {
				rule.limit = &bucket{rate: c.RateLimit, burst: burst, tokens: float64(burst)}
			}
		}
		a.clients[c.Name] = rule
	}
	for _, set := range limits {
		set()
	}
	return a, nil
}

// client is the rule of the client named name; nil when a is nil or has
// none.
func (a *access) client(name string) *clientRule {
	if a == nil {
		return nil
	}
	return a.clients[name]
}

// acl is the access rules in force.
func (s *Server) acl() *access { return s.access.Load() }

// active reports whether any rule applies (if not, check is not needed).
func (a *access) active() bool { return len(a.allowed) > 0 || a.clients != nil }

// verdict is access's answer: code 0 lets the request through, else the
// status (401, 403, 413, 429) with its reason, and for 429 the seconds
// after which the client may try again.
type verdict struct {
	code       int
	reason     string
	retryAfter int
}

// authenticate finds the request's client from the Authorization header:
// its rule, nil when no clients are configured, or a 401 verdict.
func (a *access) authenticate(auth []byte) (*clientRule, verdict) {
	if a.clients == nil {
		return nil, verdict{}
	}
	name, secret, ok := basicAuth(auth)
	if !ok {
		return nil, verdict{code: 401, reason: "credentials required (Authorization: Basic)"}
	}
	rule, known := a.clients[name]
	var want [32]byte
	if known {
		want = rule.sum
	}
	sum := sha256.Sum256([]byte(secret))
	// Compare even for an unknown name, so that timing tells nothing.
	if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !known {
		return nil, verdict{code: 401, reason: "wrong client name or secret"}
	}
	return rule, verdict{}
}

// permit decides whether the client of rule (nil: anyone) may write to
// topic.
func (a *access) permit(rule *clientRule, topic string) verdict {
	if len(a.allowed) > 0 && !matchAny(a.allowed, topic) {
		return verdict{code: 403, reason: "topic not in topics_allowed"}
	}
	if rule != nil && !matchAny(rule.topics, topic) {
		return verdict{code: 403, reason: "topic not allowed for this client"}
	}
	return verdict{}
}

// take counts n records against the rate limit of rule's client, all or
// none. Refused, it also returns how many of the n the client could have
// sent now: the index of the first record over the limit. More records
// than the client's burst can never pass at once: 413.
func (a *access) take(rule *clientRule, n int, now time.Time) (verdict, int) {
	if rule == nil || rule.limit == nil {
		return verdict{}, 0
	}
	wait, avail, burst := rule.limit.take(n, now)
	switch {
	case n > burst:
		return verdict{code: 413, reason: fmt.Sprintf("%d records at once are more than the burst of client %s (%d)", n, rule.name, burst)}, burst
	case wait > 0:
		return verdict{code: 429, reason: "rate limit of client " + rule.name + " exceeded",
			retryAfter: int(math.Ceil(wait.Seconds()))}, min(max(avail, 0), n-1)
	}
	return verdict{}, 0
}

// giveBack returns the n records a request took from the rate limit of
// rule's client (nil: none) when the request was refused as a whole with
// 503 and none of its records is in Kafka's log (README, "rate_limit"):
// the client's retry is not limited by records that were never accepted.
func (a *access) giveBack(rule *clientRule, n int) {
	if rule == nil || rule.limit == nil {
		return
	}
	rule.limit.giveBack(n, time.Now())
}

// bucket is a client's rate limit, a token bucket: rate tokens a second
// up to burst, one per record. golang.org/x/time/rate's Limiter cannot
// give tokens back once time has passed (Reservation.CancelAt restores
// nothing of a reservation already due), which giveBack needs.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // changed by a reload (setLimits)
	burst  int
	tokens float64
	last   time.Time // when tokens was counted
}

// refillLocked adds the tokens of the time since last, up to burst.
func (b *bucket) refillLocked(now time.Time) {
	if now.After(b.last) {
		b.tokens = min(float64(b.burst), b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
}

// setLimits puts b under a new rate and burst from now: the tokens of
// the time before are counted at the old rate, and what b holds stays,
// at most the new burst.
func (b *bucket) setLimits(rate float64, burst int, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now)
	b.rate, b.burst = rate, burst
	b.tokens = min(b.tokens, float64(burst))
}

// maxWait caps a refused request's wait: a tiny rate_limit (1e-12) puts
// the next token past what time.Duration holds. It is the longest
// Retry-After a gRPC answer's retry_after (int32 seconds) holds, 68 years.
const maxWait = math.MaxInt32 * time.Second

// take takes n tokens, all or none, and tells the burst; n above it
// takes nothing. Refused, it tells how long until n are there (wait > 0,
// at most maxWait) and how many are there now.
func (b *bucket) take(n int, now time.Time) (wait time.Duration, avail, burst int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.burst {
		return 0, 0, b.burst
	}
	b.refillLocked(now)
	if short := float64(n) - b.tokens; short > 0 {
		// Compared as float64 seconds: converted, they may overflow.
		if secs := short / b.rate; secs < maxWait.Seconds() {
			return max(time.Duration(secs*float64(time.Second)), 1), int(b.tokens), b.burst
		}
		return maxWait, int(b.tokens), b.burst
	}
	b.tokens -= float64(n)
	return 0, 0, b.burst
}

// giveBack returns n tokens taken, up to burst.
func (b *bucket) giveBack(n int, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now)
	b.tokens = min(float64(b.burst), b.tokens+float64(n))
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
