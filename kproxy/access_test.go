package kproxy_test

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/testcert"
)

func (p *proxy) postAs(t *testing.T, user, secret, query string) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", p.url+"/commit?"+query, bytes.NewReader([]byte{0x01}))
	if user != "" {
		req.SetBasicAuth(user, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return answer{resp.StatusCode, b.String(), resp.Header}
}

func TestTopicAllowList(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}, {Name: "billing.eu", Partitions: 1}, {Name: "secret", Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.TopicsAllowed = []string{"orders", "billing.*"} })
	for topic, want := range map[string]int{"orders": 200, "billing.eu": 200, "secret": 403, "__consumer_offsets": 403} {
		if a := p.postAs(t, "", "", "topic="+topic); a.code != want {
			t.Errorf("%s: %d %q, want %d", topic, a.code, a.body, want)
		}
	}
	if n := endOffsets(t, c, "secret"); n != 0 {
		t.Errorf("%d records written to a refused topic", n)
	}
}

func TestClientCredentials(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}, {Name: "billing.eu", Partitions: 1}})
	file := filepath.Join(t.TempDir(), "billing.secret")
	os.WriteFile(file, []byte("s3cret-from-file\n"), 0o600)
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.Clients = []kproxy.Client{
			{Name: "shop", Secret: "shop-pass", Topics: []string{"orders"}},
			{Name: "billing", SecretFile: file, Topics: []string{"billing.*"}},
		}
	})
	for _, tc := range []struct {
		user, secret, topic string
		want                int
	}{
		{"", "", "orders", 401},
		{"shop", "wrong", "orders", 401},
		{"nobody", "shop-pass", "orders", 401},
		{"shop", "shop-pass", "orders", 200},
		{"shop", "shop-pass", "billing.eu", 403},
		{"billing", "s3cret-from-file", "billing.eu", 200},
		{"billing", "s3cret-from-file", "orders", 403},
	} {
		a := p.postAs(t, tc.user, tc.secret, "topic="+tc.topic)
		if a.code != tc.want {
			t.Errorf("%s/%s → %s: %d %q, want %d", tc.user, tc.secret, tc.topic, a.code, a.body, tc.want)
		}
		if a.code == 401 && !strings.HasPrefix(a.hdr.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("401 without WWW-Authenticate")
		}
	}
	if n := endOffsets(t, c, "orders"); n != 1 {
		t.Errorf("orders holds %d records, want the 1 accepted", n)
	}
}

func TestSecretFileMustBePrivate(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	file := filepath.Join(t.TempDir(), "open.secret")
	os.WriteFile(file, []byte("x"), 0o644)
	cfg := kproxy.DefaultConfig()
	cfg.Port, cfg.AdminAddr, cfg.BrokerHosts = 0, "", c.ListenAddrs()
	cfg.Clients = []kproxy.Client{{Name: "a", SecretFile: file, Topics: []string{"orders"}}}
	if _, err := kproxy.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("New with a world-readable secret file: %v", err)
	}
}

func TestAccessConfigErrors(t *testing.T) {
	cfg := kproxy.DefaultConfig()
	cfg.BrokerHosts = []string{"h:1"}
	cfg.TopicsAllowed = []string{"[bad"}
	cfg.Clients = []kproxy.Client{{Name: "a:Hunter2pw", Topics: nil}, {Name: "x", Secret: "s", SecretFile: "f", Topics: []string{"t"}},
		{Name: "y", Secret: "s", Topics: []string{"t"}, RateLimit: -1}, {Name: "z", Secret: "s", Topics: []string{"t"}, Burst: 5}}
	cfg.TLSCertFile = "/nonexistent/cert.pem"
	err := cfg.Validate("kproxy.yaml")
	for _, want := range []string{"clients[2].rate_limit: must be >= 0 requests per second (0: no limit), got -1",
		"clients[3].burst: must be >= 1, and goes with rate_limit, got 5", "tls_cert_file: tls_cert_file and tls_key_file go together", `topics_allowed[0]: must be a topic name or a pattern like billing.*, got "[bad"`,
		`clients[0].name: must be a name without ':' (got "a:…", not shown past its ':')`, "clients[0]: needs exactly one of secret and secret_file",
		"clients[0].topics: must list", "clients[1]: needs exactly one of secret and secret_file"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
	// user:secret pasted whole into name (curl -u's form): the secret was
	// shown, got "a:Hunter2pw".
	if err != nil && strings.Contains(err.Error(), "Hunter2pw") {
		t.Errorf("the error shows what follows ':' in a client's name, a secret: %v", err)
	}
}

func TestClientRateLimit(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.Clients = []kproxy.Client{
			{Name: "slow", Secret: "a", Topics: []string{"orders"}, RateLimit: 0.2, Burst: 3},
			{Name: "free", Secret: "b", Topics: []string{"orders"}},
		}
	})
	for i := range 3 {
		if a := p.postAs(t, "slow", "a", "topic=orders"); a.code != 200 {
			t.Fatalf("request %d within the burst: %d %s", i, a.code, a.body)
		}
	}
	a := p.postAs(t, "slow", "a", "topic=orders")
	if a.code != 429 || a.hdr.Get("Retry-After") == "" || !strings.Contains(a.body, "rate limit of client slow") {
		t.Fatalf("over the rate: %d %q Retry-After %q", a.code, a.body, a.hdr.Get("Retry-After"))
	}
	// 0.2 per second: the next token comes within 5 s.
	if ra := a.hdr.Get("Retry-After"); ra < "1" || ra > "5" || len(ra) != 1 {
		t.Errorf("Retry-After %q, want 1..5 seconds", ra)
	}
	// Refused requests are not counted, and one client's limit is its own.
	for range 20 {
		if a := p.postAs(t, "free", "b", "topic=orders"); a.code != 200 {
			t.Fatalf("a client without limit: %d", a.code)
		}
	}
	if n := endOffsets(t, c, "orders"); n != 23 {
		t.Errorf("%d records written, want the 23 answered 200", n)
	}
}

func TestTLSListener(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	certs := testcert.New(t)
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.TLSCertFile, cfg.TLSKeyFile = certs.ServerCert, certs.ServerKey })
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.CA}}}
	url := strings.Replace(p.url, "http://", "https://", 1) + "/commit?topic=orders&key=k"
	resp, err := client.Post(url, "application/msgpack", bytes.NewReader([]byte{0x01}))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("over TLS: %d", resp.StatusCode)
	}
	// Plain HTTP to the TLS port writes nothing.
	if resp, err := http.Post(p.url+"/commit?topic=orders", "", bytes.NewReader([]byte{0x01})); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("plain HTTP accepted on the TLS port")
		}
	}
	if n := endOffsets(t, c, "orders"); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}
