package ktransfer

import (
	"net/url"
	"strings"
	"testing"
)

func TestTemplate(t *testing.T) {
	for _, tc := range []struct {
		tmpl, want string
		key        string
	}{
		{"/XXX/{#TOPIC}?key={#KEY}&transid={#TRANSID}&format=msgpack", "/XXX/t1?key=user+7%2F%26&transid=42&format=msgpack", "user 7/&"},
		{"/p/{#PARTITION}/{#METHOD}", "/p/3/Login", "k"},
		{"/e/{#PARTITION}?epoch={#EPOCH}", "/e/3?epoch=77", "k"},
		{"/plain", "/plain", ""},
		{"/{#KEY}{#KEY}", "/abab", "ab"},
		{"/k={#KEY}", "/k=", ""},
		{"/u/{#KEY}?k={#KEY}", "/u/a%20b%2F%3F?k=a+b%2F%3F", "a b/?"}, // a path segment in the path, query-escaped after '?'
		{"/u/{#KEY}", "/u/a%2Bb%40%3A", "a+b@:"},
	} {
		tp, err := parseTemplate(tc.tmpl)
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		got := string(tp.render(nil, uriVars{topic: "t1", key: []byte(tc.key), offset: 42, partition: 3, epoch: 77, method: "Login"}))
		if got != tc.want {
			t.Errorf("%s with key %q: %s, want %s", tc.tmpl, tc.key, got, tc.want)
		}
	}
	for _, bad := range []string{"no/slash", "/{#NOPE}", "/{#KEY", "/a b", "/x/{#topic}"} {
		if _, err := parseTemplate(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzTemplate(f *testing.F) {
	f.Add("/XXX/{#TOPIC}?key={#KEY}&transid={#TRANSID}", "key")
	f.Add("/{#METHOD}{#PARTITION}", "\x00/&?")
	f.Fuzz(func(t *testing.T, tmpl, key string) {
		tp, err := parseTemplate(tmpl)
		if err != nil {
			return
		}
		v := uriVars{topic: "topic", key: []byte(key), offset: 7, partition: 1, method: "m"}
		out := string(tp.render(nil, v))
		tp.dotSegment(v) // never panics, whatever the template and key
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("%q rendered %q", tmpl, out)
		}
		// The key can never break out of its escaping.
		if strings.Contains(tmpl, "{#KEY}") && key != "" {
			esc := url.QueryEscape(key)
			if !strings.Contains(out, esc) && !strings.Contains(out, strings.ReplaceAll(esc, "+", "%20")) {
				t.Fatalf("%q: key %q not escaped in %q", tmpl, key, out)
			}
		}
	})
}

func TestDotSegment(t *testing.T) {
	for _, tc := range []struct {
		tmpl, key, method string
		want              bool
	}{
		{"/users/{#KEY}", "..", "m", true},
		{"/users/{#KEY}/x", ".", "m", true},
		{"/u/{#METHOD}?k={#KEY}", "k", "..", true},
		{"/u/{#KEY}{#KEY}", ".", "m", true},           // ".."
		{"/u/{#KEY}%2E", ".", "m", true},              // ".%2E"
		{"/u/%2{#KEY}", "e", "m", true},               // "%2e"
		{"/users/{#KEY}", "...", "m", false},          // not a dot segment
		{"/users/{#KEY}", "%2E", "m", false},          // sent as %252E
		{"/users/{#KEY}", ".@", "m", false},           // escaped
		{"/users/{#KEY}", "", "m", false},             // an empty segment
		{"/users/x{#KEY}", ".", "m", false},           // "x."
		{"/{#TOPIC}{#KEY}", ".", "m", false},          // "t1."
		{"/{#PARTITION}{#KEY}", ".", "m", false},      // "3."
		{"/a/../{#KEY}", "k", "m", false},             // the template's own: the operator's
		{"/a?x=/{#KEY}/{#METHOD}", "..", "..", false}, // in the query
		{"/a/{#KEY}?x=..", "k", "m", false},
		// A '/' or '\' in a value is escaped (%2F, %5C), but servers that
		// decode it before they resolve dot segments (nginx) read a
		// separator: "/users/..%2Fadmin" reaches /admin there.
		{"/users/{#KEY}", "../admin", "m", true},
		{"/users/{#KEY}", "a/..", "m", true},
		{"/users/{#KEY}/x", "a/./b", "m", true},
		{"/users/{#KEY}", `..\admin`, "m", true},
		{"/u/{#METHOD}", "x/%2E.", "m", false}, // '%' escaped: %252E
		{"/users/{#KEY}", "a/b", "m", false},
		{"/users/{#KEY}", ".../x", "m", false},
		{"/users/{#KEY}y", "x/..", "m", false}, // "..y"
		{"/users/{#KEY}?k=1", "x/@/..", "m", true},
		// The template's own %2F, %5C and '\' separate segments for such
		// a server too, and a ';' starts path parameters, which Tomcat and
		// Spring strip before they resolve dot segments.
		{"/users/{#KEY}%2Fprofile", "..", "m", true},
		{"/api%2f{#KEY}/x", "..", "m", true},
		{"/users/{#KEY}%5Cprofile", "..", "m", true},
		{"/users/{#KEY}%5cprofile", ".", "m", true},
		{`/users\{#KEY}/x`, "..", "m", true},
		{"/{#KEY};v=1/x", "..", "m", true},
		{"/x;{#KEY}/y", "..", "m", false},       // a parameter's value
		{"/users/{#KEY}%2Gx", "..", "m", false}, // "..%2Gx": no separator
		{"/users/{#KEY}%2Fprofile", "k", "m", false},
		{"/a%2F..%2F{#KEY}", "k", "m", false}, // the template's own dots
		// A %XX the template and a value write together is read decoded
		// too, and so is a value's ';' (%3B): nginx passes it on decoded to
		// a backend that strips path parameters.
		{"/u/%2{#KEY}", "F..", "m", true},
		{"/u/%{#KEY}", "2F../admin", "m", true},
		{"/u/{#KEY}%2{#METHOD}", "..", "F", true},
		{"/u/{#KEY}%{#KEY}y", "2F/..", "m", true},
		{"/u/..%2{#KEY}", "Fadmin", "m", true}, // the key chose where ".." ends
		{"/users/{#KEY}", "..;x", "m", true},
		{"/{#KEY}%3Bv=1/x", "..", "m", true},
		{"/u/..%2F{#KEY}", "admin", "m", false}, // the template's own
		{"/a;jsessionid=x/{#KEY}", "a.b", "m", false},
		{"/x/{#KEY}.json", ".", "m", false},
		{"/u/%{#KEY}", "2E", "m", true}, // "%2E"
		{"/u/%{#KEY}", "2G..", "m", false},
		{"/u/%{#KEY}../x", "2F", "m", true}, // the key chose where ".." begins
		{"/u/{#KEY}%2{#METHOD}../x", "k", "F", true},
		{"/u/{#KEY}%{#PARTITION}E", ".", "m", false}, // partition 3: "%3E" is a ">"
		{"/u/{#KEY}%{#PARTITION}B", "..", "m", true}, // "..%3B": a ';'
		{"/u/%2F{#KEY}", "x", "m", false},
	} {
		tp, err := parseTemplate(tc.tmpl)
		if err != nil {
			t.Fatalf("%s: %v", tc.tmpl, err)
		}
		v := uriVars{topic: "t1", key: []byte(tc.key), partition: 3, method: tc.method}
		if got := tp.dotSegment(v); got != tc.want {
			t.Errorf("%s with key %q, method %q (%s): %v, want %v", tc.tmpl, tc.key, tc.method, tp.render(nil, v), got, tc.want)
		}
		if n := testing.AllocsPerRun(10, func() { tp.dotSegment(v) }); n != 0 {
			t.Errorf("%s: %v allocations", tc.tmpl, n)
		}
	}
}
