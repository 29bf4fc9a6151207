package ktransfer_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestPushAnsweredWithLargeHeadersIsPushedOnce: a backend answers 200 with
// headers of 8 KiB (a few cookies, a content security policy). The answer
// is judged by its status: each record is pushed once and committed. The
// HTTP client's default read buffer (4 KiB) failed the answer as a
// transport error: every record was pushed again and again (retried until
// it succeeds, by default for ever), and the partition never moved.
func TestPushAnsweredWithLargeHeadersIsPushedOnce(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) {
		w.Header().Set("Content-Security-Policy", strings.Repeat("x", 8<<10))
		w.WriteHeader(200)
	})
	m := module("m", "t", b.URL)
	m.WorkerNum = 1
	e.produce(t, "t", [][2]string{{"k", "a"}, {"k", "b"}, {"k", "c"}})
	e.start(t, m)
	deadline := time.Now().Add(5 * time.Second)
	for e.storedOffset(t, "m", "t", 0) != "3" {
		if time.Now().After(deadline) {
			t.Fatalf("stored offset %s after 5 s, want 3; %d pushes of 3 records", e.storedOffset(t, "m", "t", 0), len(b.got()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(b.got()); n != 3 {
		t.Errorf("%d pushes of 3 records answered 200", n)
	}
}
