package ktransfer_test

import (
	"log/slog"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// dotSegmentRecords are records whose key or method, placed in the path of
// /users/{#KEY}/{#METHOD}, makes a segment "." or ".." (offsets 0 to 2),
// followed by records whose do not (3 to 5: three dots, and %2E written by
// the record, which is escaped as %252E).
var dotSegmentRecords = [][2]string{
	{"..", `{"method":"get"}`},
	{"k1", `{"method":"."}`},
	{".", `{"method":"get"}`},
	{"...", `{"method":"get"}`},
	{"%2E%2e", `{"method":"get"}`},
	{"k2", `{"method":"get"}`},
}

// pushedOffsets is the sorted X-Kafka-Offset of every push b received.
func pushedOffsets(b *backend) []string {
	var offs []string
	for _, p := range b.got() {
		offs = append(offs, p.offset)
	}
	sort.Strings(offs)
	return offs
}

// TestDotSegmentFromKeyIsRefused: a server that normalizes paths reads
// /users/../get as /get, another endpoint than the template names. A
// record whose key or method makes a segment of the path "." or ".." is
// refused for good, never pushed: with a dead_letter_topic it is given up
// at once into it, with the reason; the others are pushed as before.
func TestDotSegmentFromKeyIsRefused(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.Protocol.URI = "/users/{#KEY}/{#METHOD}?key={#KEY}"
	m.DeadLetterTopic = "dlq"
	logs := pushDotSegmentRecords(t, e, b, m)
	var dead []string
	for _, r := range kafkatest.ReadAll(t, e.kafka, e.kc, "dlq") {
		h := headersOf(r)
		dead = append(dead, h["ktransfer-offset"])
		if !strings.Contains(h["ktransfer-reason"], `"." or ".."`) {
			t.Errorf("dead letter of offset %s: reason %q", h["ktransfer-offset"], h["ktransfer-reason"])
		}
	}
	sort.Strings(dead)
	if got := strings.Join(dead, ","); got != "0,1,2" {
		t.Errorf("dead letters of offsets %s, want 0,1,2", got)
	}
	if !strings.Contains(logs.String(), `segment \".\" or \"..\"`) { // quoted by the log
		t.Errorf("the refusal is not logged with its reason:\n%.3000s", logs.String())
	}
}

// TestDotSegmentFromKeyWithoutDeadLetterTopic: without a
// dead_letter_topic such a record is treated as a backend's permanent
// refusal is: retried (never pushed), each refusal logged as an error
// with its reason, and given up after max_retry_times.
func TestDotSegmentFromKeyWithoutDeadLetterTopic(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.Protocol.URI = "/users/{#KEY}/{#METHOD}"
	m.MaxRetryTimes = 2
	logs := pushDotSegmentRecords(t, e, b, m)
	text := logs.String()
	if n := strings.Count(text, "level=ERROR msg=\"push refused and no dead_letter_topic; retrying\""); n != 6 {
		t.Errorf("%d refusals logged as errors, want 6 (2 for each of 3 records):\n%.3000s", n, text)
	}
	if n := strings.Count(text, "record given up"); n != 3 {
		t.Errorf("%d records given up, want 3:\n%.3000s", n, text)
	}
	if !strings.Contains(text, `segment \".\" or \"..\"`) { // quoted by the log
		t.Errorf("the refusal is not logged with its reason:\n%.3000s", text)
	}
}

// pushDotSegmentRecords writes dotSegmentRecords to topic t, runs module m
// (pushing to b) until they are all committed, and checks only the last
// three were pushed. It returns the process's log.
func pushDotSegmentRecords(t *testing.T, e *env, b *backend, m ktransfer.Module) *runtest.Log {
	t.Helper()
	e.produce(t, "t", dotSegmentRecords)
	var logs runtest.Log
	tr, err := ktransfer.New(e.config(t, 0, m), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "offset 6 stored", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "6" })
	if got := strings.Join(pushedOffsets(b), ","); got != "3,4,5" {
		t.Errorf("pushed offsets %s, want 3,4,5; log:\n%.3000s", got, logs.String())
	}
	return &logs
}

// TestDotSegmentWithTheRecordsNumbers: the check of the rendered path read
// the numbers of the record ({#TRANSID}, {#PARTITION}, {#EPOCH}) as 0,
// where the push writes the record's own. With uri /u/{#KEY}%{#TRANSID}B,
// the key ".." at offset 3 checked as "..%0B" (no separator: allowed) and
// was pushed to /u/..%3B, which a server stripping path parameters (from
// %3B, ';') reads as /u/..: another path than the template names. It is
// refused now, as the path it is pushed to reads.
func TestDotSegmentWithTheRecordsNumbers(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	m.Protocol.URI = "/u/{#KEY}%{#TRANSID}B"
	m.DeadLetterTopic = "dlq"
	e.produce(t, "t", [][2]string{{"a", "{}"}, {"b", "{}"}, {"c", "{}"}, {"..", "{}"}, {"d", "{}"}})
	tr, err := ktransfer.New(e.config(t, 0, m), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "offset 5 stored", 10*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == "5" })
	if got := strings.Join(pushedOffsets(b), ","); got != "0,1,2,4" {
		t.Errorf("pushed offsets %s, want 0,1,2,4 (the key .. at offset 3 makes /u/..%%3B)", got)
	}
	var dead []string
	for _, r := range kafkatest.ReadAll(t, e.kafka, e.kc, "dlq") {
		dead = append(dead, headersOf(r)["ktransfer-offset"])
	}
	if got := strings.Join(dead, ","); got != "3" {
		t.Errorf("dead letters of offsets %s, want 3", got)
	}
}
