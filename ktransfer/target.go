package ktransfer

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A per-record target (protocol.target_header) is the URL a record names
// in one of its headers: the asynchronous call, where a client posts a body
// and the URL to call with it. It is allowed only when its host:port is one
// of backend_servers, compared after normalizing both (host lower-cased,
// without a trailing dot; port as a number, 80 when the URL has none); no
// name is resolved. The push then goes through that backend's connections,
// to the configured address, never to an address the record chose; its
// Host is that backend's normalized host:port, never the URL's spelling.

// target is where one record's URL sends it.
type target struct {
	backend int    // index in backend_servers
	host    string // the Host header: the backend's normalized host:port
	// uri is the absolute form http://<host><the URL's path and query>.
	// The HTTP client parses the request URI again before writing it: a
	// path alone starting with // (http://allowed//evil/x?a=http://b) would
	// be read as naming the host evil, sent as Host, and its user
	// information as Authorization. In the absolute form the host is ours.
	uri string
}

// validHeaderName reports whether name can name a record header in a
// module file: printable ASCII without spaces.
func validHeaderName(name string) bool {
	for i := range len(name) {
		if c := name[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return name != ""
}

// normalHostPort is host:port as compared against the allow-list; false
// when the port is not a number from 1 to 65535.
func normalHostPort(host, port string) (string, bool) {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || host == "" {
		return "", false
	}
	return net.JoinHostPort(strings.ToLower(strings.TrimSuffix(host, ".")), strconv.Itoa(n)), true
}

// allowList maps each backend's normalized host:port to its index.
func allowList(backends []string) map[string]int {
	allowed := make(map[string]int, len(backends))
	for i, b := range backends {
		host, port, err := net.SplitHostPort(b)
		if err != nil {
			continue // refused by Validate
		}
		if hp, ok := normalHostPort(host, port); ok {
			if _, dup := allowed[hp]; !dup {
				allowed[hp] = i
			}
		}
	}
	return allowed
}

// targetOf reads the record's target header. It returns nil and "" when
// the record has none (the module's uri applies), or nil and why the
// target is not allowed.
func (p *pusher) targetOf(rec *kgo.Record) (*target, string) {
	var raw string
	found := 0
	for _, h := range rec.Headers {
		if strings.EqualFold(h.Key, p.targetHeader) {
			raw = string(h.Value)
			found++
		}
	}
	switch {
	case found == 0:
		return nil, ""
	case found > 1:
		return nil, "header " + p.targetHeader + " given " + strconv.Itoa(found) + " times"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, "not a URL"
	case u.Scheme != "http":
		// Backends are spoken to in plain HTTP (protocol.name: http).
		return nil, "scheme " + strconv.Quote(u.Scheme) + " (only http)"
	case u.Opaque != "" || u.Host == "":
		return nil, "no host"
	case u.User != nil:
		// http://allowed@evil/ names the host evil: a URL with user
		// information is refused whatever its host.
		return nil, "user information in the URL"
	case strings.IndexByte(u.RawQuery, ' ') >= 0:
		// url.Parse leaves a query as written (a path's spaces it
		// escapes): sent as it is, a space would split the request line.
		return nil, "white space in the query"
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	hp, ok := normalHostPort(u.Hostname(), port)
	if !ok {
		return nil, "bad host or port"
	}
	i, ok := p.allowed[hp]
	if !ok {
		return nil, hp + " is not in backend_servers"
	}
	return &target{backend: i, host: hp, uri: "http://" + hp + u.RequestURI()}, ""
}
