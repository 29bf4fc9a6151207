package kproxy_test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestFullClientBufferRefusedNotHung attacks the bound on what Kafka's
// client holds. A partition whose broker answers REQUEST_TIMED_OUT keeps
// the acks=-1 (idempotent) client's records: the client cannot know they
// were not written, so it never fails them, and the ones queued behind
// them stay too, each answered 504 at its deadline and its request's place
// given back. A few waves fill the client's buffer. With the spool on, the
// next record was handed to the client while its topic's spool gate was
// held, with no deadline: the client waited for room, and the gate's flip,
// the only way out, waited for the gate: the request was never answered.
// It is refused at once now (503, Retry-After, nothing written).
func TestFullClientBufferRefusedNotHung(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	const pool = 500
	srv := spoolServer(t, c, func(cfg *kproxy.Config) {
		cfg.ReqPoolSize = pool
		cfg.MaxBatchRecords = pool
		cfg.ProduceTimeoutMs = 600
		cfg.SpoolAfterMs = 300
	})
	p := runProxy(t, srv)
	var stuck atomic.Bool
	stuck.Store(true)
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if pr := req.(*kmsg.ProduceRequest); stuck.Load() && pr.Acks != 0 {
			return kafkatest.ProduceError(pr, kerr.RequestTimedOut.Code), nil, true
		}
		return nil, nil, false
	})
	// The end: the partition answers, the client writes what it kept
	// (and the proxy stops with nothing left).
	defer stuck.Store(false)

	// The client's buffer holds 2 × req_pool_size + 1000 records: waves of
	// req_pool_size records, each answered 504, until a wave is refused
	// (or blocks: hung, on the old code, in Kafka's client).
	var recs []string
	for i := range pool {
		recs = append(recs, `{"key":"k`+strconv.Itoa(i%7)+`","value":"v"}`)
	}
	body := []byte("[" + strings.Join(recs, ",") + "]")
	hc := &http.Client{Timeout: 5 * time.Second}
	post := func(path string, ct string, body []byte) (int, string, http.Header, error) {
		resp, err := hc.Post(p.url+path, ct, bytes.NewReader(body))
		if err != nil {
			return 0, "", nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header, nil
	}
	// Waves until one is not all 504 (its records found no room).
	for wave := 0; ; wave++ {
		code, text, _, err := post("/batch?acks=-1&spool=0&topic="+topic, "application/json", body)
		if err != nil {
			t.Fatalf("wave %d of %d acks=-1 records: %v", wave, pool, err)
		}
		if code != 504 {
			break
		}
		if wave == 2+1000/pool+2 {
			t.Fatalf("%d waves of %d records answered 504, want the client's buffer full before: %.300s", wave+1, pool, text)
		}
	}
	// What room is left, but one record: 504 (new code), or 503 for the
	// records that found no room in the old code's client.
	body = []byte("[" + strings.Join(recs[:pool-1], ",") + "]")
	if _, _, _, err := post("/batch?acks=-1&spool=0&topic="+topic, "application/json", body); err != nil {
		t.Fatalf("%d more records: %v", pool-1, err)
	}
	// A batch finding the client full is refused whole, and its records
	// are counted in kproxy_produce_errors_total as /commit's record is
	// (they were not: an alert on it missed a gRPC or /batch load).
	errs503 := func() int {
		v, err := strconv.ParseFloat(p.metric(t, `kproxy_produce_errors_total{code="503"}`), 64)
		if err != nil {
			return 0 // absent: none yet
		}
		return int(v)
	}
	before := errs503()
	code, text, _, err := post("/batch?acks=-1&spool=0&topic="+topic, "application/json", []byte(`[{"value":"a"},{"value":"b"},{"value":"c"}]`))
	if err != nil || code != 503 || !strings.Contains(text, "kafka's client") {
		t.Fatalf("a batch of 3 with Kafka's client full: %d %q %v, want 503 naming the full client", code, text, err)
	}
	// The next record, spool allowed: answered within its deadline.
	start := time.Now()
	code, text, hdr, err := post("/commit?acks=-1&key=x&topic="+topic, "application/msgpack", record(t, map[string]any{"v": 1}))
	if err != nil {
		t.Fatalf("a record with Kafka's client full: %v after %v; want an answer within produce_timeout_ms", err, time.Since(start).Round(time.Millisecond))
	}
	if code != 503 || hdr.Get("Retry-After") == "" || !strings.Contains(text, "kafka's client") {
		t.Errorf("a record with Kafka's client full: %d %q (Retry-After %q), want 503 naming the full client, with Retry-After", code, text, hdr.Get("Retry-After"))
	}
	if got := errs503() - before; got != 4 {
		t.Errorf("3 records of a batch and 1 of /commit refused 503 with Kafka's client full: kproxy_produce_errors_total{code=\"503\"} grew %d, want 4", got)
	}
	// The partition answers again: the client writes the records answered
	// 504 (or fails them, their deadline past, once it knows the first
	// were written), never the ones refused 503.
	stuck.Store(false)
	for deadline := time.Now().Add(15 * time.Second); kproxy.ClientRecords(srv) > 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("kafka's clients still hold %d records 15 s after the partition answers again", kproxy.ClientRecords(srv))
		}
	}
	if n, most := endOffsets(t, c, topic), int64(3*pool+pool-1); n > most {
		t.Errorf("%d records in kafka once the partition answers, want at most the %d answered 504", n, most)
	}
}
