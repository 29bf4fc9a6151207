package ktransfer

import (
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// pushOnce pushes one record with module file m to a raw backend
// answering 200, and returns the request line and Host header it received.
func pushOnce(t *testing.T, m Module, key []byte, value []byte) (line, host string, auth string, a attempt) {
	t.Helper()
	ln, got := rawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	m.BackendServers = []string{ln.Addr().String()}
	p, err := newPusher(m)
	if err != nil {
		t.Fatalf("newPusher: %v (Validate passed)", err)
	}
	r := &record{msg: &kgo.Record{Topic: m.Topic, Partition: 3, Offset: 7, Key: key, Value: value}, part: &partition{epoch: 1}}
	var buf []byte
	a = p.push(0, r, &buf)
	if a.err != nil {
		t.Fatalf("push: %v", a.err)
	}
	s := <-got
	return s.line, s.host, s.auth, a
}

func uriModule(uri string, headers []map[string]string) Module {
	m := DefaultModule()
	m.File = "conf/modules/m.yaml"
	m.Topic = "orders"
	m.Protocol.URI = uri
	m.Protocol.Headers = headers
	m.Protocol.WriteTimeoutMs, m.Protocol.ConnTimeoutMs, m.Protocol.ReadTimeoutMs = 2000, 2000, 2000
	m.BackendServers = []string{"127.0.0.1:1"} // for Validate; replaced by the test backend
	return m
}

// TestBadURIOrHostRefused: a protocol.uri or a Host header the HTTP
// client cannot parse again went out other than written (fasthttp
// rebuilds the request line and Host from its own parse, and ignores the
// parse's error): to POST / with no Host, to the path before a #, with
// user information turned into an Authorization header. Each is refused
// at start-up, naming the file, the field and the value; a good Host and
// uri still load.
func TestBadURIOrHostRefused(t *testing.T) {
	for _, tc := range []struct {
		name, uri, host string
		field           string
	}{
		{"DEL byte in uri", "/push\x7f/{#KEY}", "", "protocol.uri"},
		{"NUL byte in uri", "/push\x00/{#KEY}", "", "protocol.uri"},
		{"# in uri", "/push/v1#frag/{#KEY}", "", "protocol.uri"},
		{"Host with a path", "/push/{#KEY}", "api.example/v2", "protocol.headers[0].Host"},
		{"Host with a named port", "/push/{#KEY}", "api.example:http", "protocol.headers[0].Host"},
		{"Host an IPv6 address unbracketed", "/push/{#KEY}", "fe80::1", "protocol.headers[0].Host"},
		{"Host with user information", "/push/{#KEY}", "user:pw@api.example", "protocol.headers[0].Host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var headers []map[string]string
			if tc.host != "" {
				headers = []map[string]string{{"Host": tc.host}}
			}
			err := uriModule(tc.uri, headers).Validate()
			if err == nil || !strings.Contains(err.Error(), "conf/modules/m.yaml: "+tc.field+": ") {
				t.Fatalf("uri %q, Host %q: Validate: %v, want an error naming conf/modules/m.yaml: %s", tc.uri, tc.host, err, tc.field)
			}
		})
	}
	for _, host := range []string{"www.myhug.cn", "api.example:8080", "[fe80::1]:8080", "10.0.0.1"} {
		m := uriModule("/push/{#KEY}?a=%23b", []map[string]string{{"Host": host}})
		if err := m.Validate(); err != nil {
			t.Fatalf("Host %q: %v", host, err)
		}
		line, got, _, _ := pushOnce(t, m, []byte("k"), []byte("v"))
		if line != "POST /push/k?a=%23b HTTP/1.1" || got != host {
			t.Errorf("Host %q: the push reached the backend as %q with Host %q", host, line, got)
		}
	}
}

// TestRecordCannotChooseHostOrPath: a record's key (here: none, a
// keyless record) must never change the Host a push carries or move it to
// another path than the template renders. The uri has the key as its
// first segment and a callback URL in its query, which Validate accepts.
func TestRecordCannotChooseHostOrPath(t *testing.T) {
	for _, tc := range []struct {
		name, uri string
		key       []byte
		wantLine  string
	}{
		{"keyless record, key first in the path", "/{#KEY}/orders?callback=http://cb.example/done", nil,
			"POST //orders?callback=http://cb.example/done HTTP/1.1"},
		{"keyed record, uri starting //", "//{#KEY}/orders?callback=http://cb.example/done", []byte("evil.example"),
			"POST //evil.example/orders?callback=http://cb.example/done HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := uriModule(tc.uri, []map[string]string{{"Host": "www.myhug.cn"}})
			if err := m.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			line, host, _, a := pushOnce(t, m, tc.key, []byte("v"))
			if host != "www.myhug.cn" || line != tc.wantLine {
				t.Errorf("record key %q: the push (judged %d) reached the backend as %q with Host %q; want %q with Host %q",
					tc.key, a.status, line, host, tc.wantLine, "www.myhug.cn")
			}
		})
	}
}
