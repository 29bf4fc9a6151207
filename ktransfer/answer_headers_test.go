package ktransfer_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
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
	deadline := time.Now().Add(30 * time.Second)
	for e.storedOffset(t, "m", "t", 0) != "3" {
		if time.Now().After(deadline) {
			t.Fatalf("stored offset %s after 30 s, want 3; %d pushes of 3 records", e.storedOffset(t, "m", "t", 0), len(b.got()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(b.got()); n != 3 {
		t.Errorf("%d pushes of 3 records answered 200", n)
	}
}

// TestAnswerHeadersOverLimitLoggedWithoutThem: a backend answers 503 with
// headers over 64 KiB. As README says, the attempt fails and is retried as
// a connection error; its warning says why, and does not quote the
// answer: the HTTP client's error carried the first and last 200 bytes of
// the headers (a session cookie the backend sets), logged at every retry.
// (A 2xx with such headers is a push:
// TestTwoHundredWhoseHeadDoesNotParseIsPushed.)
func TestAnswerHeadersOverLimitLoggedWithoutThem(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, func(_ int, _ push, w http.ResponseWriter) {
		w.Header().Set("Set-Cookie", "session=s3cr3t-v4lue; "+strings.Repeat("x", 70<<10))
		w.WriteHeader(503)
	})
	m := module("m", "t", b.URL)
	m.WorkerNum = 1
	e.produce(t, "t", [][2]string{{"k", "a"}})
	var logs runtest.Log
	tr, err := ktransfer.New(e.config(t, 0, m), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "a retry logged", 10*time.Second, func() bool { return strings.Contains(logs.String(), "push failed; retrying") })
	for _, line := range strings.Split(logs.String(), "\n") {
		if !strings.Contains(line, "push failed; retrying") {
			continue
		}
		if strings.Contains(line, "s3cr3t") {
			t.Errorf("the warning quotes the answer's headers: %.300s", line)
		}
		if !strings.Contains(line, "64 KiB") {
			t.Errorf("the warning does not say the answer's headers passed 64 KiB: %.300s", line)
		}
		break
	}
}
