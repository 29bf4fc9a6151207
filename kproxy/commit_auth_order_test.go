package kproxy_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestInternalTopicAuthenticatesFirst: with clients, a request to a
// Kafka-internal topic (__*) without valid credentials is 401 on /commit
// as on /batch: it learns nothing about the topic before it names its
// client; an authenticated one is 403. /commit answered 403 to anyone.
func TestInternalTopicAuthenticatesFirst(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.Clients = []kproxy.Client{{Name: "shop", Secret: "shop-pass", Topics: []string{"*"}}}
	})
	post := func(path, user, secret string, body []byte) answer {
		t.Helper()
		req, _ := http.NewRequest("POST", p.url+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
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
	for _, tc := range []struct {
		user, secret string
		want         int
	}{
		{"", "", 401},
		{"shop", "wrong", 401},
		{"shop", "shop-pass", 403},
	} {
		for _, r := range []struct{ path, body string }{
			{"/commit?topic=__consumer_offsets", `1`},
			{"/batch?topic=__consumer_offsets", `[{"value":1}]`},
		} {
			a := post(r.path, tc.user, tc.secret, []byte(r.body))
			if a.code != tc.want {
				t.Errorf("%s as %q/%q: %d %q, want %d", r.path, tc.user, tc.secret, a.code, strings.TrimSpace(a.body), tc.want)
			}
			if a.code == 401 && !strings.HasPrefix(a.hdr.Get("WWW-Authenticate"), "Basic") {
				t.Errorf("%s: 401 without WWW-Authenticate", r.path)
			}
		}
	}
}
