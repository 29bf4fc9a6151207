package kproxy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestBatchExtFields: with ext_headers [ip, rid], /batch refuses a record
// whose own headers name an ext field (as /commit refuses the request
// header), gives every record the request's ext fields, and echoes the
// X-Request-ID. (Before, /batch wrote a client's "ip" header unchecked and
// added none: a consumer trusting ip was fooled.)
func TestBatchExtFields(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ExtHeaders = []string{"ip", "rid"} })
	a := p.postBatch(t, "topic="+topic+"&acks=1", "application/json",
		[]byte(`[{"value":0},{"value":1,"headers":{"ip":"6.6.6.6","rid":"forged"}}]`))
	if a.code != 400 || a.Index == nil || *a.Index != 1 || !strings.Contains(a.Error, "set by kproxy") {
		t.Fatalf("a batch record forging ip: %v, want 400 at index 1, set by kproxy", a)
	}
	a = p.postBatchWith(t, "topic="+topic+"&acks=1", []byte(`[{"value":1,"headers":{"trace":"t1"}},{"value":2}]`), "X-Request-ID", "req-42")
	if a.code != 200 {
		t.Fatalf("/batch: %v", a)
	}
	if got := a.hdr.Get("X-Request-ID"); got != "req-42" {
		t.Errorf("X-Request-ID %q, want req-42 echoed", got)
	}
	for i, r := range a.Results {
		m := readRecord(t, c, topic, r.Partition, *r.Offset)
		got := map[string]string{}
		for _, h := range m.Headers {
			got[h.Key] = string(h.Value)
		}
		if got["ip"] != "127.0.0.1" || got["rid"] != "req-42" {
			t.Errorf("record %d headers %v, want ip 127.0.0.1 and rid req-42", i, got)
		}
	}
}

// TestBatchAll504SaysMayBeWritten: a batch whose every record got no
// answer (504, may have been written) must not be described as "no record
// written": a client reading the error would send it again and write it twice.
func TestBatchAll504SaysMayBeWritten(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 800 })
	if a := p.postBatch(t, "topic="+topic+"&acks=1", "", mpBatch(t, []brec{{value: mp(t, 0)}})); a.code != 200 {
		t.Fatalf("warm-up: %v", a)
	}
	release := make(chan struct{})
	stop := holdOn(c, 0, release)
	a := p.postBatch(t, "topic="+topic+"&acks=1", "", mpBatch(t, []brec{{value: mp(t, 1)}, {value: mp(t, 2)}}))
	close(release)
	stop()
	if a.code != 504 {
		t.Fatalf("held batch: %v, want 504", a)
	}
	if strings.HasPrefix(a.Error, "no record written") {
		t.Errorf("504 batch answered %q: says none written while each record may have been", a.Error)
	}
}

// TestBatchUnknownParameter: a misspelled atomic must not write a batch
// that can end half written.
func TestBatchUnknownParameter(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, nil)
	a := p.postBatch(t, "topic="+topic+"&acks=-1&atmoic=1", "application/json", []byte(`[{"value":1}]`))
	if a.code != 400 || !strings.Contains(a.Error, `unknown parameter "atmoic"`) {
		t.Fatalf("misspelled atomic: %v, want 400 naming it", a)
	}
	if n := endOffsets(t, c, topic); n != 0 {
		t.Errorf("%d records written", n)
	}
}

// postBatchWith posts a JSON batch with one extra request header.
func (p *proxy) postBatchWith(t *testing.T, query string, body []byte, name, value string) batchAnswer {
	t.Helper()
	req, err := http.NewRequest("POST", p.url+"/batch?"+query, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(name, value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := batchAnswer{code: resp.StatusCode, hdr: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("/batch answer %d %q: %v", a.code, raw, err)
	}
	return a
}
