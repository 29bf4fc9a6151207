package ktransfer_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestMethodFilterReadsJSONRecords: kproxy takes JSON bodies
// (Content-Type: application/json) and writes them unchanged, so a module
// with methods meets JSON objects as well as msgpack maps. A JSON record
// whose "method" is listed is pushed, with {#METHOD} filled in; one whose
// method is not listed is filtered; one that is not an object, or has no
// string method, is counted as without a method; msgpack records are read
// as before. Every record is done: the offsets cover them all.
func TestMethodFilterReadsJSONRecords(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	logins := newBackend(t, nil)
	e.produce(t, "t", [][2]string{
		{"u1", `{"method":"Login","n":1}`},
		{"u2", `{"n":2,"method":"Logout"}`},
		{"u3", "\n { \"n\": 3, \"method\" : \"Lo\\u0067in\" }\n"}, // white space and an escape
		{"u4", `["Login"]`},                                       // not an object
		{"u5", `{"method":7}`},                                    // not a string
		{"u6", `{"method":"Login"`},                               // cut short
		{"u7", mp(t, map[string]any{"method": "Login", "n": 7})},
	})
	m := module("logins", "t", logins.URL)
	m.Methods = []string{"Login"}
	m.Protocol.URI = "/m/{#METHOD}?key={#KEY}"
	e.start(t, m)
	waitFor(t, "every record done", 10*time.Second, func() bool {
		n, _ := strconv.Atoi(e.storedOffset(t, "logins", "t", 0))
		return n == 7
	})
	var got []string
	for _, p := range logins.got() {
		got = append(got, p.key+" "+p.path)
	}
	slices.Sort(got) // keys are pushed in parallel
	want := []string{"u1 /m/Login", "u3 /m/Login", "u7 /m/Login"}
	if len(got) != len(want) {
		t.Fatalf("pushed %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("push %d: %q, want %q", i, got[i], want[i])
		}
	}
}
