package ktransfer_test

import (
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
