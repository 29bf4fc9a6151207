package ktransfer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// refusedBehindOthers writes, to partition 0 of topic t, a record of size
// bytes (key "big", offset 0) followed by 40 small records of other keys,
// and returns a backend that refuses the large one (413, a permanent
// refusal) and takes the rest, and module m pushing t to it with
// dead_letter_topic dlq and window_size 10: the module moves on only when
// the large record is finished.
func refusedBehindOthers(t *testing.T, e *env, size int) (*backend, ktransfer.Module) {
	t.Helper()
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if len(p.body) >= size {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		}
	})
	// Written as kproxy writes a record just under the topic's
	// max.message.bytes (1,048,588 by default): in a batch of its own.
	cl := kafkatest.Client(t, e.kafka, e.kc, kgo.ProducerBatchMaxBytes(1_048_588))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := []*kgo.Record{{Topic: "t", Key: []byte("big"), Value: bytes.Repeat([]byte("x"), size)}}
	for i := range 40 {
		recs = append(recs, &kgo.Record{Topic: "t", Key: []byte("k" + strconv.Itoa(i)), Value: []byte(strconv.Itoa(i))})
	}
	for _, r := range recs {
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dlq"
	m.WindowSize = 10
	return b, m
}

// movesOn waits until the 40 small records are pushed and the offset is
// past all 41.
func movesOn(t *testing.T, e *env, b *backend) {
	t.Helper()
	waitFor(t, "the 40 small records pushed and offset 41 stored", 20*time.Second, func() bool {
		return distinct(b) == 41 && e.storedOffset(t, "m", "t", 0) == "41"
	})
}

// headersOf is a record's headers by name.
func headersOf(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// metricValue is the value of series (name and labels, as /metrics
// writes it) in admin's /metrics, or "" when there is none.
func metricValue(t *testing.T, admin, series string) string {
	t.Helper()
	for _, line := range strings.Split(get(t, admin+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// TestDeadLetterOfALargeRecordIsWritten: a record that fits its topic
// (1,020,000 bytes, under the default max.message.bytes of 1,048,588) is
// refused by the backend; its dead letter — the record plus the
// ktransfer-* headers — is larger than kgo's default batch bound
// (1,000,012) but fits the dead-letter topic, whose max.message.bytes the
// dead-letter producer follows: it is written whole, and the module moves
// on. (The dead-letter write used to fail with MESSAGE_TOO_LARGE and be
// retried for ever, the window full behind it.)
func TestDeadLetterOfALargeRecordIsWritten(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	b, m := refusedBehindOthers(t, e, 1_020_000)
	e.start(t, m)
	movesOn(t, e, b)
	dead := kafkatest.ReadAll(t, e.kafka, e.kc, "dlq")
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	h := headersOf(dead[0])
	if len(dead[0].Value) != 1_020_000 || h["ktransfer-offset"] != "0" || h["ktransfer-reason"] != "status 413" || h["ktransfer-value-omitted"] != "" {
		t.Errorf("dead letter of %d bytes, headers %v; want the record's 1,020,000 bytes, offset 0, reason status 413", len(dead[0].Value), h)
	}
}

// TestDeadLetterTooLargeForItsTopicIsWrittenWithoutValue: the dead-letter
// topic's max.message.bytes (10,000) is below the refused record (50,000
// bytes): the dead letter is written without the value — the same headers,
// the value empty, and ktransfer-value-omitted saying the size and why —
// counted and the module moves on. A replay skips it and counts it: an
// empty body is not the record.
func TestDeadLetterTooLargeForItsTopicIsWrittenWithoutValue(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	limit := "10000"
	if _, err := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc)).CreateTopic(ctx, 1, 1, map[string]*string{"max.message.bytes": &limit}, "dlq"); err != nil {
		t.Fatal(err)
	}
	b, m := refusedBehindOthers(t, e, 50_000)
	_, admin := e.startAdmin(t, 0, m)
	movesOn(t, e, b)
	dead := kafkatest.ReadAll(t, e.kafka, e.kc, "dlq")
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	h := headersOf(dead[0])
	if len(dead[0].Value) != 0 || string(dead[0].Key) != "big" || h["ktransfer-module"] != "m" || h["ktransfer-topic"] != "t" ||
		h["ktransfer-partition"] != "0" || h["ktransfer-offset"] != "0" || h["ktransfer-reason"] != "status 413" ||
		!strings.HasPrefix(h["ktransfer-value-omitted"], "50000 bytes: MESSAGE_TOO_LARGE") {
		t.Errorf("dead letter key %q, %d bytes, headers %v; want key big, no value, the origin, and ktransfer-value-omitted", dead[0].Key, len(dead[0].Value), h)
	}
	for series, want := range map[string]string{
		`ktransfer_dead_lettered_total{module="m"}`:              "1",
		`ktransfer_dead_letters_without_value_total{module="m"}`: "1",
		`ktransfer_dead_letters_dropped_total{module="m"}`:       "0",
	} {
		if got := metricValue(t, admin, series); got != want {
			t.Errorf("%s %q, want %s", series, got, want)
		}
	}

	rep := replayWithin(t, e.config(t, 0, m), 20*time.Second)
	if rep.Replayed != 0 || rep.Skipped != 1 || rep.WithoutValue != 1 || rep.GivenUp != 0 {
		t.Errorf("replay: %v; want the dead letter without value skipped and counted", rep)
	}
	if !strings.Contains(rep.String(), ", without value 1, ") {
		t.Errorf("report %q does not count the dead letter without value", rep)
	}
	for _, p := range b.got() {
		if p.header.Get("X-Ktransfer-Replay") != "" {
			t.Errorf("replay pushed %d bytes for offset %s", len(p.body), p.offset)
		}
	}
}

// TestDeadLetterRefusedForGoodDoesNotHoldTheModule: the dead-letter topic
// refuses writes with TOPIC_AUTHORIZATION_FAILED twice (an operator may
// fix it: retried, nothing committed past the record), then with
// INVALID_RECORD (for good), the dead letter without the value too: the
// record is given up without one, counted, and the module moves on.
func TestDeadLetterRefusedForGoodDoesNotHoldTheModule(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 1})
	b, m := refusedBehindOthers(t, e, 1000)
	var refusals atomic.Int64
	var committedEarly atomic.Value
	e.kafka.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		code := kerr.InvalidRecord.Code
		if refusals.Add(1) <= 2 {
			code = kerr.TopicAuthorizationFailed.Code
			if off := e.storedOffset(t, "m", "t", 0); off != "0" && !strings.HasPrefix(off, "<") {
				committedEarly.Store(off)
			}
		}
		return kafkatest.ProduceError(req.(*kmsg.ProduceRequest), code), nil, true
	})
	_, admin := e.startAdmin(t, 0, m)
	movesOn(t, e, b)
	if off := committedEarly.Load(); off != nil {
		t.Errorf("offset %v stored while the dead-letter write was being retried", off)
	}
	if n := refusals.Load(); n != 5 {
		t.Errorf("%d dead-letter writes, want 5: 2 refused until fixed, the record refused for good (beside others, then alone), and its form without value", n)
	}
	if n := kafkatest.Records(t, e.kafka, e.kc, "dlq"); n != 0 {
		t.Errorf("%d dead letters", n)
	}
	for series, want := range map[string]string{
		`ktransfer_failed_total{module="m"}`:                     "1",
		`ktransfer_dead_lettered_total{module="m"}`:              "0",
		`ktransfer_dead_letters_without_value_total{module="m"}`: "0",
		`ktransfer_dead_letters_dropped_total{module="m"}`:       "1",
	} {
		if got := metricValue(t, admin, series); got != want {
			t.Errorf("%s %q, want %s", series, got, want)
		}
	}
}

// TestDeadLettersThatEachFitKeepTheirValue: the brokers do not tell the
// dead-letter topic's max.message.bytes (describe-configs denied), so kgo
// bounds its batches by its default, above the topic's 10,000 bytes, and
// puts several 4,000-byte dead letters of concurrent workers in one batch,
// which the broker refuses as too large. That refusal is the batch's, not a
// record's: each dead letter is written again alone, with its value.
func TestDeadLettersThatEachFitKeepTheirValue(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	limit := "10000"
	if _, err := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc)).CreateTopic(ctx, 1, 1, map[string]*string{"max.message.bytes": &limit}, "dlq"); err != nil {
		t.Fatal(err)
	}
	const n, size = 20, 4000
	b := newBackend(t, func(_ int, p push, w http.ResponseWriter) {
		if len(p.body) >= size {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		}
	})
	cl := kafkatest.Client(t, e.kafka, e.kc)
	for i := range n {
		v := make([]byte, size)
		_, _ = rand.Read(v) // incompressible
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Key: []byte("k" + strconv.Itoa(i)), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	e.kafka.ControlKey(int16(kmsg.DescribeConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		dr := req.(*kmsg.DescribeConfigsRequest)
		resp := dr.ResponseKind().(*kmsg.DescribeConfigsResponse)
		for _, rr := range dr.Resources {
			sr := kmsg.NewDescribeConfigsResponseResource()
			sr.ResourceType, sr.ResourceName = rr.ResourceType, rr.ResourceName
			sr.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Resources = append(resp.Resources, sr)
		}
		return resp, nil, true
	})
	m := module("m", "t", b.URL)
	m.DeadLetterTopic = "dlq"
	_, admin := e.startAdmin(t, 0, m)
	waitFor(t, "offset 20 stored", 30*time.Second, func() bool { return e.storedOffset(t, "m", "t", 0) == strconv.Itoa(n) })
	dead := kafkatest.ReadAll(t, e.kafka, e.kc, "dlq")
	without := 0
	for _, d := range dead {
		if headersOf(d)["ktransfer-value-omitted"] != "" {
			without++
		}
	}
	if len(dead) != n || without > 0 {
		t.Errorf("%d dead letters for %d records, %d of them without the value, though each (%d bytes) fits the topic's 10,000", len(dead), n, without, size)
	}
	if d := metricValue(t, admin, `ktransfer_dead_letters_dropped_total{module="m"}`); d != "0" {
		t.Errorf("ktransfer_dead_letters_dropped_total %s, want 0", d)
	}
}

// TestDeadLetterTopicCreatedLateKeepsTheValue: the dead-letter topic does
// not exist when the first record is given up (an operator creates it
// afterwards, with the default max.message.bytes). The record (1,020,000
// bytes) fits the topic, its dead letter too, as when the topic was there
// from the start (TestDeadLetterOfALargeRecordIsWritten): it is written
// whole once the topic exists, not without its value because the
// producer met the new topic before it was asked for its limit.
func TestDeadLetterTopicCreatedLateKeepsTheValue(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	b, m := refusedBehindOthers(t, e, 1_020_000)
	var logs runtest.Log
	tr, err := ktransfer.New(e.config(t, 0, m), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "the dead-letter topic's limit looked up and not found", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "max.message.bytes of the dead-letter topic unknown")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(kafkatest.Client(t, e.kafka, e.kc)).CreateTopic(ctx, 1, 1, nil, "dlq"); err != nil {
		t.Fatal(err)
	}
	movesOn(t, e, b)
	dead := kafkatest.ReadAll(t, e.kafka, e.kc, "dlq")
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	h := headersOf(dead[0])
	if len(dead[0].Value) != 1_020_000 || h["ktransfer-offset"] != "0" || h["ktransfer-value-omitted"] != "" {
		t.Errorf("dead letter of %d bytes, headers %v; want the record's 1,020,000 bytes", len(dead[0].Value), h)
	}
}
