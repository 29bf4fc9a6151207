package ktransfer_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestKeyAndMethodInThePathArriveAsWritten: {#KEY} and {#METHOD} placed
// in the path of protocol.uri arrive there as the record wrote them. In a
// path a '+' is a plus, not a space: the keys "a b" and "a+b" are two
// keys, and a backend reading its path must tell them apart (as it does
// in the query, where key=a+b is a space).
func TestKeyAndMethodInThePathArriveAsWritten(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.Protocol.URI = "/users/{#KEY}/{#METHOD}?key={#KEY}"
	e.produce(t, "t", [][2]string{{"a b", `{"method":"Get User"}`}, {"a+b", `{"method":"Get+User"}`}})
	e.start(t, m)
	waitFor(t, "both pushes", 10*time.Second, func() bool { return len(b.got()) == 2 })
	want := map[string]string{"a b": "/users/a b/Get User", "a+b": "/users/a+b/Get+User"}
	for _, p := range b.got() {
		if w, ok := want[p.key]; !ok || p.path != w {
			t.Errorf("key %q (from the query) arrived at path %q; want %q", p.key, p.path, w)
		}
	}
}

// TestKeyInThePathDecodedEitherWay: a backend may decode the segment of
// its path that holds {#KEY} as a path (a '+' is a plus) or, as one
// written for the query-escaped keys of earlier versions or one using a
// form decoder (Java's URLDecoder, PHP's urldecode), as a form value (a
// '+' is a space). Either way it reads every key as the record wrote it:
// a plus is %2B in the path, a space %20, as before but for the space.
func TestKeyInThePathDecodedEitherWay(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	keys := []string{"a b", "a+b", "x@y:z=1&$,;"}
	var mu sync.Mutex
	raw := map[string]string{} // offset → the key's segment as sent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		raw[r.Header.Get("X-Kafka-Offset")] = strings.TrimPrefix(r.RequestURI, "/users/")
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	m := module("m", "t", srv.URL)
	m.Protocol.URI = "/users/{#KEY}"
	var recs [][2]string
	for _, k := range keys {
		recs = append(recs, [2]string{k, "v"})
	}
	e.produce(t, "t", recs)
	e.start(t, m)
	waitFor(t, "every push", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(raw) == len(keys)
	})
	mu.Lock()
	defer mu.Unlock()
	for i, k := range keys {
		seg := raw[strconv.Itoa(i)]
		if got, err := url.PathUnescape(seg); err != nil || got != k {
			t.Errorf("key %q sent as %q, read as a path: %q (%v)", k, seg, got, err)
		}
		if got, err := url.QueryUnescape(seg); err != nil || got != k {
			t.Errorf("key %q sent as %q, read as a form value: %q (%v)", k, seg, got, err)
		}
	}
}
