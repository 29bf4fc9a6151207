package kproxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The tests in this file attack DESIGN.md's "Batches": a batch is checked
// whole before anything is written, answered 200, 207 or one status, and
// keeps each key's order; an atomic batch is all or nothing for
// read_committed consumers.

type batchResult struct {
	Partition int32  `json:"partition"`
	Offset    *int64 `json:"offset"`
	Status    int    `json:"status"`
	Error     string `json:"error"`
}

type batchAnswer struct {
	code    int
	hdr     http.Header
	raw     string
	Error   string        `json:"error"`
	Index   *int          `json:"index"`
	Results []batchResult `json:"results"`
}

// brec is a record of a test batch; value is its encoding (msgpack or
// JSON), put in the batch as is.
type brec struct {
	topic   string // "": none (the topic parameter applies)
	key     string
	noKey   bool
	value   []byte
	headers [][2]string
}

// mpBatch encodes records as a msgpack array of maps.
func mpBatch(t testing.TB, recs []brec) []byte {
	t.Helper()
	arr := make([]any, len(recs))
	for i, r := range recs {
		m := map[string]any{"value": msgpack.RawMessage(r.value)}
		if r.topic != "" {
			m["topic"] = r.topic
		}
		if !r.noKey {
			m["key"] = r.key
		}
		if len(r.headers) > 0 {
			h := map[string]string{}
			for _, kv := range r.headers {
				h[kv[0]] = kv[1]
			}
			m["headers"] = h
		}
		arr[i] = m
	}
	b, err := msgpack.Marshal(arr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsonBatch writes records as a JSON array by hand, so that each value's
// text (white space included) is what the batch carries.
func jsonBatch(recs []brec) []byte {
	var b bytes.Buffer
	b.WriteString("[\n")
	for i, r := range recs {
		if i > 0 {
			b.WriteString(",\n")
		}
		b.WriteString(" {")
		if r.topic != "" {
			fmt.Fprintf(&b, `"topic": %q, `, r.topic)
		}
		if !r.noKey {
			k, _ := json.Marshal(r.key)
			fmt.Fprintf(&b, `"key":%s, `, k)
		}
		if len(r.headers) > 0 {
			b.WriteString(`"headers": {`)
			for j, kv := range r.headers {
				if j > 0 {
					b.WriteString(",")
				}
				k, _ := json.Marshal(kv[0])
				v, _ := json.Marshal(kv[1])
				fmt.Fprintf(&b, "%s:%s", k, v)
			}
			b.WriteString("}, ")
		}
		b.WriteString(`"value": `)
		b.Write(r.value)
		b.WriteString(" }")
	}
	b.WriteString("\n]\n")
	return b.Bytes()
}

func mp(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// postBatch posts body to /batch?query; contentType "" sends msgpack;
// user, when set, sends credentials.
func (p *proxy) postBatch(t testing.TB, query, contentType string, body []byte, user ...string) batchAnswer {
	t.Helper()
	req, err := http.NewRequest("POST", p.url+"/batch?"+query, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType == "" {
		contentType = "application/msgpack"
	}
	req.Header.Set("Content-Type", contentType)
	if len(user) == 2 {
		req.SetBasicAuth(user[0], user[1])
	}
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST /batch?%s: %v", query, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := batchAnswer{code: resp.StatusCode, hdr: resp.Header, raw: string(raw)}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("/batch answered %d with Content-Type %q: %s", a.code, ct, raw)
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatalf("/batch answer %d %q: %v", a.code, raw, err)
	}
	return a
}

// index is the answer's index, -1 when it has none.
func (a batchAnswer) index() int {
	if a.Index == nil {
		return -1
	}
	return *a.Index
}

func (a batchAnswer) String() string { return fmt.Sprintf("%d %.300s", a.code, a.raw) }

// partitionOf is the partition kproxy (kgo, murmur2) gives key among n.
func partitionOf(key string, n int) int32 {
	p := kgo.StickyKeyPartitioner(nil).ForTopic("any")
	return int32(p.Partition(&kgo.Record{Key: []byte(key)}, n))
}

// keysFor returns count keys landing on partition p of n.
func keysFor(p int32, n, count int) []string {
	var keys []string
	for i := 0; len(keys) < count; i++ {
		if k := "key" + strconv.Itoa(i); partitionOf(k, n) == p {
			keys = append(keys, k)
		}
	}
	return keys
}

// pinLeaders makes broker p the leader of partition p of topic.
func pinLeaders(t testing.TB, c *kfake.Cluster, topic string, n int32) {
	t.Helper()
	for p := range n {
		if err := c.MoveTopicPartition(topic, p, p); err != nil {
			t.Fatal(err)
		}
	}
}

// onBroker runs fn for every produce request broker node receives (fn
// returns what a control function returns) until the returned stop is
// called; other brokers are not touched.
func onBroker(c *kfake.Cluster, node int32, fn func(*kmsg.ProduceRequest) (kmsg.Response, error, bool)) (stop func()) {
	var stopped atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if stopped.Load() {
			return nil, nil, false
		}
		c.KeepControl()
		if c.CurrentNode() != node {
			return nil, nil, false
		}
		return fn(req.(*kmsg.ProduceRequest))
	})
	return func() { stopped.Store(true) }
}

// refuseOn answers broker node's produce requests with code for every
// partition, writing nothing.
func refuseOn(c *kfake.Cluster, node int32, code int16) (stop func()) {
	return onBroker(c, node, func(pr *kmsg.ProduceRequest) (kmsg.Response, error, bool) {
		return kafkatest.ProduceError(pr, code), nil, true
	})
}

// holdOn holds broker node's produce requests until release is closed.
func holdOn(c *kfake.Cluster, node int32, release <-chan struct{}) (stop func()) {
	return onBroker(c, node, func(*kmsg.ProduceRequest) (kmsg.Response, error, bool) {
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
}

// threeBrokers is a 3-broker cluster holding topic with 3 partitions,
// partition p led by broker p, and optionally more topics.
func threeBrokers(t *testing.T, more ...kafkatest.Topic) *kfake.Cluster {
	t.Helper()
	c := kafkatest.StartBrokers(t, 3, append([]kafkatest.Topic{{Name: topic, Partitions: 3}}, more...))
	pinLeaders(t, c, topic, 3)
	return c
}

// byValue indexes topic's records (read_committed) by value.
func byValue(t testing.TB, c *kfake.Cluster, topic string) map[string]*kgo.Record {
	t.Helper()
	out := map[string]*kgo.Record{}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		if _, dup := out[string(r.Value)]; dup {
			t.Errorf("%s: value %q written twice", topic, r.Value)
		}
		out[string(r.Value)] = r
	}
	return out
}

func TestBatchRoundTrip(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}, {Name: "other", Partitions: 2}})
	p := startProxy(t, c, nil)
	mpValues := [][]byte{
		mp(t, map[string]any{"method": "TestUserName", "uid": 7}),
		{0xc0}, {0xa0}, {0xc4, 3, 0, 0x0d, 0x0a}, mp(t, []any{1, "two", 3.5}),
		append([]byte{0xd9, 200}, bytes.Repeat([]byte("é"), 100)...),
	}
	jsonValues := [][]byte{
		[]byte(`{"method": "TestUserName",  "uid": 7}`), []byte(`null`), []byte(`""`), []byte(`"\u00e9\n"`),
		[]byte("[1, \"two\",\n 3.5e0]"), []byte(`-0.5`),
	}
	for _, format := range []string{"msgpack", "json"} {
		t.Run(format, func(t *testing.T) {
			values, ctype, encode := mpValues, "", func(r []brec) []byte { return mpBatch(t, r) }
			if format == "json" {
				values, ctype, encode = jsonValues, "application/json; charset=utf-8", jsonBatch
			}
			var recs []brec
			for i, v := range values {
				r := brec{key: format + "-k" + strconv.Itoa(i%3), value: v}
				switch i % 3 {
				case 0:
					r.topic = "other"
				case 1:
					r.headers = [][2]string{{"trace-id", "t" + strconv.Itoa(i)}, {"Origin", "é"}}
				case 2:
					r.noKey = true
				}
				recs = append(recs, r)
			}
			a := p.postBatch(t, "topic="+topic+"&acks=-1", ctype, encode(recs))
			if a.code != 200 || len(a.Results) != len(recs) {
				t.Fatalf("answer %v, want 200 with %d results", a, len(recs))
			}
			for i, r := range recs {
				res := a.Results[i]
				if res.Offset == nil || res.Status != 0 || res.Error != "" {
					t.Fatalf("result %d: %+v, want partition and offset only", i, res)
				}
				tp := r.topic
				if tp == "" {
					tp = topic
				}
				m := readRecord(t, c, tp, res.Partition, *res.Offset)
				if !bytes.Equal(m.Value, r.value) {
					t.Errorf("record %d: value %q, sent %q", i, m.Value, r.value)
				}
				switch {
				case r.noKey && m.Key != nil:
					t.Errorf("record %d: key %q, sent none", i, m.Key)
				case !r.noKey && string(m.Key) != r.key:
					t.Errorf("record %d: key %q, sent %q", i, m.Key, r.key)
				}
				if !r.noKey {
					parts := map[string]int{topic: 3, "other": 2}[tp]
					if want := partitionOf(r.key, parts); res.Partition != want {
						t.Errorf("record %d: partition %d, /commit's partitioner gives %d", i, res.Partition, want)
					}
				}
				var got [][2]string
				for _, h := range m.Headers {
					got = append(got, [2]string{h.Key, string(h.Value)})
				}
				sort.Slice(got, func(i, j int) bool { return got[i][0] < got[j][0] })
				want := append([][2]string(nil), r.headers...)
				sort.Slice(want, func(i, j int) bool { return want[i][0] < want[j][0] })
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("record %d: headers %v, sent %v", i, got, want)
				}
			}
		})
	}
	for _, want := range []string{
		`kproxy_batches_total{code="200"} 2`, `kproxy_batch_results_total{code="200"} 12`,
		`kproxy_batch_records_sum 12`, `kproxy_records_total{acks="-1"} 12`, `kproxy_requests_total{code="200"} 2`,
	} {
		if !strings.Contains(p.metrics(t), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// metrics is the admin listener's /metrics text.
func (p *proxy) metrics(t testing.TB) string {
	t.Helper()
	resp, err := http.Get("http://" + p.srv.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestBatchRefusedWhole: any bad record refuses the batch with the status
// and the index of the first bad record; nothing of it is written.
func TestBatchRefusedWhole(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}, {Name: "other", Partitions: 1}, {Name: "secret", Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.AutoCreateTopics = false
		cfg.MaxMessageBytes = 2000
		cfg.MaxBatchRecords = 5
		// bad[/]name lets the record topic bad/name past the ACL, to
		// its name check (a plain "bad/name" matches no topic: refused
		// at load).
		cfg.TopicsAllowed = []string{topic, "other", "__*", "no_such_topic", "bad[/]name"}
	})
	v := mp(t, "v")
	ok := brec{key: "k", value: v}
	five := []brec{ok, ok, ok, ok, ok}
	with := func(i int, r brec) []brec {
		recs := append([]brec(nil), five...)
		recs[i] = r
		return recs
	}
	manyHeaders := brec{key: "k", value: v}
	for i := range 65 {
		manyHeaders.headers = append(manyHeaders.headers, [2]string{"h" + strconv.Itoa(i), "x"})
	}
	big := brec{key: "k", value: append([]byte{0xc5, 0x07, 0xd0}, make([]byte, 2000)...)}
	mpMap := func(m map[string]any) []byte { return mp(t, []any{map[string]any{"value": 1}, m}) }
	cases := []struct {
		name, query, ctype string
		body               []byte
		code               int
		index              int // -1: none
		reason             string
	}{
		{"not an array", "topic=" + topic, "", mp(t, map[string]any{"value": 1}), 400, -1, "array"},
		{"empty array", "topic=" + topic, "", mp(t, []any{}), 400, -1, "no records"},
		{"empty body", "topic=" + topic, "", nil, 400, -1, "empty body"},
		{"bad msgpack", "topic=" + topic, "", []byte{0x92, 0xc1}, 400, 0, "not valid msgpack"},
		{"bad msgpack second record", "topic=" + topic, "", []byte{0x92, 0x81, 0xa5, 'v', 'a', 'l', 'u', 'e', 0x01, 0x81, 0xa5, 'v', 'a', 'l', 'u', 'e', 0xc1}, 400, 1, "not valid msgpack"},
		{"msgpack array cut short", "topic=" + topic, "", []byte{0x92, 0x81, 0xa5, 'v', 'a', 'l', 'u', 'e', 0x01}, 400, -1, "msgpack"},
		{"trailing bytes", "topic=" + topic, "", append(mpBatch(t, five), 0x01), 400, -1, "trailing"},
		{"record not a map", "topic=" + topic, "", mp(t, []any{map[string]any{"value": 1}, 7}), 400, 1, "not a map"},
		{"no value", "topic=" + topic, "", mpMap(map[string]any{"key": "k"}), 400, 1, "value"},
		{"unknown field", "topic=" + topic, "", mpMap(map[string]any{"value": 1, "vaule": 2}), 400, 1, "vaule"},
		{"key not a string", "topic=" + topic, "", mpMap(map[string]any{"value": 1, "key": 5}), 400, 1, "key"},
		{"headers not a map", "topic=" + topic, "", mpMap(map[string]any{"value": 1, "headers": []any{"a"}}), 400, 1, "headers"},
		{"header value not a string", "topic=" + topic, "", mpMap(map[string]any{"value": 1, "headers": map[string]any{"a": 1}}), 400, 1, "header"},
		{"65 headers", "topic=" + topic, "", mpBatch(t, with(3, manyHeaders)), 400, 3, "64"},
		{"no topic anywhere", "", "", mpBatch(t, five), 400, 0, "topic"},
		{"bad topic name", "topic=" + topic, "", mpBatch(t, with(2, brec{topic: "bad/name", value: v})), 400, 2, "topic name"},
		{"internal topic", "topic=" + topic, "", mpBatch(t, with(4, brec{topic: "__consumer_offsets", value: v})), 403, 4, "kafka-internal"},
		{"topic not allowed", "topic=" + topic, "", mpBatch(t, with(1, brec{topic: "secret", value: v})), 403, 1, "topics_allowed"},
		{"unknown topic", "topic=" + topic, "", mpBatch(t, with(3, brec{topic: "no_such_topic", value: v})), 404, 3, "unknown topic"},
		{"oversize record", "topic=" + topic, "", mpBatch(t, with(2, big)), 413, 2, "max_message_bytes"},
		{"too many records", "topic=" + topic, "", mpBatch(t, append(five, ok)), 413, 5, "max_batch_records"},
		{"first bad wins", "topic=" + topic, "", mpBatch(t, []brec{ok, {topic: "no_such_topic", value: v}, {topic: "secret", value: v}}), 404, 1, "unknown"},
		{"bad json", "topic=" + topic, "application/json", []byte(`[{"value":1},{"value":}]`), 400, 1, "not valid JSON"},
		{"json without a comma", "topic=" + topic, "application/json", []byte(`[{"value":1} {"value":2}]`), 400, -1, "JSON"},
		{"json cut after a comma", "topic=" + topic, "application/json", []byte(`[{"value":1},`), 400, -1, "JSON"},
		{"json two commas", "topic=" + topic, "application/json", []byte(`[{"value":1},,{"value":2}]`), 400, -1, "JSON"},
		{"json record not an object", "topic=" + topic, "application/json", []byte(`[{"value":1}, [1]]`), 400, 1, "not an object"},
		{"json duplicate field", "topic=" + topic, "application/json", []byte(`[{"value":1,"value":2}]`), 400, 0, "twice"},
		{"json header not a string", "topic=" + topic, "application/json", []byte(`[{"value":1,"headers":{"a":null}}]`), 400, 0, "header"},
		{"msgpack sent as json", "topic=" + topic, "application/json", mpBatch(t, five), 400, -1, "JSON"},
		{"atomic at acks=1", "topic=" + topic + "&atomic=1", "", mpBatch(t, five), 400, -1, "acks=-1"},
		{"bad atomic", "topic=" + topic + "&acks=-1&atomic=yes", "", mpBatch(t, five), 400, -1, "atomic"},
		{"bad acks", "topic=" + topic + "&acks=2", "", mpBatch(t, five), 400, -1, "acks"},
		{"key parameter", "topic=" + topic + "&key=k", "", mpBatch(t, five), 400, -1, "key"},
		{"topic twice", "topic=" + topic + "&topic=other", "", mpBatch(t, five), 400, -1, "more than once"},
		{"bad topic parameter", "topic=a%2Fb", "", mpBatch(t, five), 400, -1, "topic name"},
	}
	for _, tc := range cases {
		a := p.postBatch(t, tc.query, tc.ctype, tc.body)
		idx := -1
		if a.Index != nil {
			idx = *a.Index
		}
		if a.code != tc.code || idx != tc.index || !strings.Contains(a.Error, tc.reason) || len(a.Results) != 0 {
			t.Errorf("%s: got %v, want %d index %d with a reason containing %q", tc.name, a, tc.code, tc.index, tc.reason)
		}
	}
	for _, tp := range []string{topic, "other"} {
		if n := endOffsets(t, c, tp); n != 0 {
			t.Errorf("%d records written to %s by refused batches", n, tp)
		}
	}
	resp, err := http.Get(p.url + "/batch?topic=" + topic)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /batch: %d Allow=%q, want 405 Allow=POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestBatchClientsAndRateLimit: credentials once per batch, each record's
// topic against the client's, and a batch of N takes N from rate_limit.
func TestBatchClientsAndRateLimit(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "orders", Partitions: 1}, {Name: "billing", Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.Clients = []kproxy.Client{{Name: "shop", Secret: "pw", Topics: []string{"orders"}, RateLimit: 0.01, Burst: 10}}
	})
	recs := func(n int, topicAt map[int]string) []byte {
		var rs []brec
		for i := range n {
			tp := topicAt[i]
			rs = append(rs, brec{topic: tp, key: "k", value: mp(t, i)})
		}
		return mpBatch(t, rs)
	}
	if a := p.postBatch(t, "topic=orders", "", recs(3, nil)); a.code != 401 || a.hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("no credentials: %v", a)
	}
	if a := p.postBatch(t, "topic=orders", "", recs(3, nil), "shop", "wrong"); a.code != 401 {
		t.Errorf("wrong secret: %v", a)
	}
	// Refused for a topic: takes nothing from the rate.
	if a := p.postBatch(t, "topic=orders", "", recs(8, map[int]string{6: "billing"}), "shop", "pw"); a.code != 403 || a.index() != 6 {
		t.Errorf("record 6 for billing: %v, want 403 index 6", a)
	}
	if a := p.postBatch(t, "topic=orders", "", recs(11, nil), "shop", "pw"); a.code != 413 || a.index() != 10 || !strings.Contains(a.Error, "burst") {
		t.Errorf("11 records, burst 10: %v, want 413 index 10", a)
	}
	if a := p.postBatch(t, "topic=orders", "", recs(8, nil), "shop", "pw"); a.code != 200 {
		t.Errorf("8 records of a burst of 10: %v", a)
	}
	a := p.postBatch(t, "topic=orders", "", recs(5, nil), "shop", "pw")
	if a.code != 429 || a.index() != 2 || a.hdr.Get("Retry-After") == "" {
		t.Errorf("5 records with 2 left: %v Retry-After=%q, want 429 index 2", a, a.hdr.Get("Retry-After"))
	}
	if a := p.postBatch(t, "topic=orders", "", recs(2, nil), "shop", "pw"); a.code != 200 {
		t.Errorf("2 records with 2 left: %v (the refused batch took nothing)", a)
	}
	if n := endOffsets(t, c, "orders"); n != 10 {
		t.Errorf("%d records in orders, want the 10 of the accepted batches", n)
	}
	if n := endOffsets(t, c, "billing"); n != 0 {
		t.Errorf("%d records in billing", n)
	}
}

// failureBatch is 4 records per partition of topic (3 partitions, led by
// brokers 0, 1, 2), interleaved, and the partition of each.
func failureBatch(t *testing.T, label string) ([]brec, []int32) {
	var recs []brec
	var parts []int32
	keys := [3][]string{keysFor(0, 3, 2), keysFor(1, 3, 2), keysFor(2, 3, 2)}
	for i := range 12 {
		p := int32(i % 3)
		recs = append(recs, brec{key: keys[p][i/3%2], value: mp(t, label+strconv.Itoa(i))})
		parts = append(parts, p)
	}
	return recs, parts
}

// TestBatchPartialFailure: one broker refusing, or holding, its produce
// requests fails its partitions' records only: 207 with each result's own
// status (503 not written, 504 may have been written: a refusal of the
// records' batch is not told to be a record's own; at acks=-1, with other
// requests written since a record was handed over, it may have been the
// refusal of a retry of a written batch: 503 or 504), the
// others written at their offsets; when every record failed alike, that
// status.
func TestBatchPartialFailure(t *testing.T) {
	c := threeBrokers(t)
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 1000 })
	answered504 := 0
	unsureRetry := false // 504 taken for 503: a refusal as invalid at acks=-1
	check := func(name string, a batchAnswer, recs []brec, parts []int32, failed int32, wantCode int, mayBeWritten bool) {
		t.Helper()
		if a.code != 207 || len(a.Results) != len(recs) {
			t.Fatalf("%s: %v, want 207 with %d results", name, a, len(recs))
		}
		inKafka := byValue(t, c, topic)
		for i, res := range a.Results {
			_, there := inKafka[string(recs[i].value)]
			switch {
			case parts[i] == failed:
				if res.Status == 504 {
					answered504++
				}
				if (res.Status != wantCode && (wantCode != 503 || !unsureRetry || res.Status != 504)) || res.Error == "" || res.Offset != nil {
					t.Errorf("%s: record %d on the failing broker: %+v, want status %d with an error", name, i, res, wantCode)
				}
				if there && !mayBeWritten {
					t.Errorf("%s: record %d answered %d is in Kafka", name, i, res.Status)
				}
			default:
				if res.Status != 200 || res.Offset == nil || res.Partition != parts[i] {
					t.Errorf("%s: record %d: %+v, want status 200 on partition %d", name, i, res, parts[i])
					continue
				}
				if r := inKafka[string(recs[i].value)]; r == nil || r.Partition != res.Partition || r.Offset != *res.Offset {
					t.Errorf("%s: record %d answered %d@%d, in Kafka: %v", name, i, res.Partition, *res.Offset, r)
				}
			}
		}
	}
	for _, acks := range []string{"1", "-1"} {
		stop := refuseOn(c, 2, 87) // INVALID_RECORD: a definite refusal, of the batch (perhaps for one record)
		recs, parts := failureBatch(t, "invalid-"+acks+"-")
		unsureRetry = acks == "-1"
		check("INVALID_RECORD acks="+acks, p.postBatch(t, "topic="+topic+"&acks="+acks, "", mpBatch(t, recs)), recs, parts, 2, 503, false)
		unsureRetry = false
		stop()

		stop = refuseOn(c, 2, 6) // NOT_LEADER_OR_FOLLOWER until the deadline
		recs, parts = failureBatch(t, "notleader-"+acks+"-")
		// At acks=-1 a leader may refuse so a batch it appended before it
		// lost the leadership: 504 (TestAcksAllAfterNotLeaderAppendNot503).
		want, mayBe := 503, false
		if acks == "-1" {
			want, mayBe = 504, true
		}
		check("NOT_LEADER acks="+acks, p.postBatch(t, "topic="+topic+"&acks="+acks, "", mpBatch(t, recs)), recs, parts, 2, want, mayBe)
		stop()

		release := make(chan struct{})
		stop = holdOn(c, 2, release) // no answer until after the deadline
		recs, parts = failureBatch(t, "held-"+acks+"-")
		a := p.postBatch(t, "topic="+topic+"&acks="+acks, "", mpBatch(t, recs))
		close(release)
		stop()
		check("held acks="+acks, a, recs, parts, 2, 504, true)
	}
	// Every broker refusing: one status for the batch, with the results.
	stops := []func(){refuseOn(c, 0, 87), refuseOn(c, 1, 87), refuseOn(c, 2, 87)}
	recs, _ := failureBatch(t, "all-")
	a := p.postBatch(t, "topic="+topic+"&acks=1", "", mpBatch(t, recs))
	for _, s := range stops {
		s()
	}
	if a.code != 503 || len(a.Results) != len(recs) {
		t.Fatalf("every record refused: %v, want 503 with the results", a)
	}
	for i, res := range a.Results {
		if res.Status != 503 || res.Error == "" {
			t.Errorf("record %d: %+v", i, res)
		}
	}
	if m := p.metrics(t); !strings.Contains(m, `kproxy_batches_total{code="207"} 6`) || !strings.Contains(m, `kproxy_batch_results_total{code="504"} `+strconv.Itoa(answered504)+"\n") {
		t.Errorf("/metrics: batches or results by status missing")
	}
}

// TestBatchKeyOrder: batches of interleaved keys written while partition
// leaders move every 25 ms: every record is answered 200, and each key's
// records are in Kafka once, in the order of their batch.
func TestBatchKeyOrder(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 6}})
	p := startProxy(t, c, nil)
	stop := kafkatest.NewFaults(t, c).ShuffleEvery(25 * time.Millisecond)
	type val struct {
		Key string `msgpack:"k"`
		Seq int    `msgpack:"s"`
	}
	sent := 0
	for _, q := range []string{"acks=1", "acks=-1", "acks=-1&atomic=1"} {
		for b := range 8 {
			var recs []brec
			for i := range 300 {
				k := "k" + strconv.Itoa(i%10)
				recs = append(recs, brec{key: k, value: mp(t, val{k, sent + b*300 + i})})
			}
			if a := p.postBatch(t, "topic="+topic+"&"+q, "", mpBatch(t, recs)); a.code != 200 {
				t.Fatalf("%s batch %d under leader moves: %v", q, b, a)
			}
		}
		sent += 8 * 300
	}
	t.Logf("%d leader shuffles", stop())
	last := map[string]int{}
	n := 0
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		var v val
		if err := msgpack.Unmarshal(r.Value, &v); err != nil {
			t.Fatal(err)
		}
		if prev, ok := last[v.Key]; ok && v.Seq <= prev {
			t.Errorf("key %s: seq %d after %d (partition %d offset %d)", v.Key, v.Seq, prev, r.Partition, r.Offset)
		}
		last[v.Key] = v.Seq
		n++
	}
	if n != sent {
		t.Errorf("%d records in Kafka, %d answered 200", n, sent)
	}
}

// TestBatchAtomic: an atomic batch over two topics is visible whole to a
// read_committed consumer; one whose record a broker refuses is aborted
// (one status, never 207) and none of it is visible, though its other
// records reached the log; the transactional client serves the next
// batch.
func TestBatchAtomic(t *testing.T) {
	c, p := txnProxy(t, 0, kafkatest.Topic{Name: "other", Partitions: 2})
	batch := func(label string) []brec {
		recs, _ := failureBatch(t, label)
		recs = append(recs, brec{topic: "other", key: "x", value: mp(t, label+"other")})
		return recs
	}
	committed := batch("committed-")
	a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "application/msgpack", mpBatch(t, committed))
	if a.code != 200 || len(a.Results) != len(committed) {
		t.Fatalf("atomic batch: %v", a)
	}

	stop := refuseOn(c, 2, 87)
	aborted := batch("aborted-")
	a = p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, aborted))
	stop()
	if a.code != 503 || a.index() != 2 || !strings.Contains(a.Error, "aborted") || len(a.Results) != len(aborted) {
		t.Fatalf("atomic batch with record 2's batch refused: %v, want 503 index 2 saying it was aborted", a)
	}
	for i, res := range a.Results {
		if res.Status != 503 || res.Offset != nil || res.Error == "" {
			t.Errorf("result %d of the aborted batch: %+v", i, res)
		}
	}
	endBefore := endOffsets(t, c, topic)

	after := batch("after-")
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, after)); a.code != 200 {
		t.Fatalf("atomic batch after an abort: %v", a)
	}

	got := byValue(t, c, topic)
	for k, r := range byValue(t, c, "other") {
		got[k] = r
	}
	for _, r := range append(committed, after...) {
		if got[string(r.value)] == nil {
			t.Errorf("committed record %q not visible", r.value)
		}
	}
	for _, r := range aborted {
		if got[string(r.value)] != nil {
			t.Errorf("record %q of the aborted batch visible to a read_committed consumer", r.value)
		}
	}
	// The aborted batch's 8 records on brokers 0 and 1 were appended (and
	// aborted): the log holds them beside the first batch's 12 records
	// and its 3 commit markers.
	if withAborted := int64(12 + 3 + 8); endBefore < withAborted {
		t.Errorf("log end %d: the aborted records never reached the log, so the test proved nothing", endBefore)
	}
	if m := p.metrics(t); !strings.Contains(m, `kproxy_transactions_total{outcome="committed"} 2`) || !strings.Contains(m, `kproxy_transactions_total{outcome="aborted"} 1`) {
		t.Errorf("/metrics: transactions by outcome missing")
	}
}

// TestBatchAtomicTimeout: a broker holds an atomic batch's produce
// request past produce_timeout_ms: the batch is aborted and answered 503
// (not written: it can never be committed), and when the broker lets the
// request go afterwards nothing of it becomes visible.
func TestBatchAtomicTimeout(t *testing.T) {
	c, p := txnProxy(t, 800)
	release := make(chan struct{})
	stop := holdOn(c, 2, release)
	recs, _ := failureBatch(t, "held-")
	a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs))
	close(release)
	stop()
	if a.code != 503 || !strings.Contains(a.Error, "aborted") {
		t.Fatalf("atomic batch held past its deadline: %v, want 503 (aborted)", a)
	}
	next, _ := failureBatch(t, "next-")
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, next)); a.code != 200 {
		t.Fatalf("atomic batch after the timeout: %v", a)
	}
	got := byValue(t, c, topic)
	for _, r := range recs {
		if got[string(r.value)] != nil {
			t.Errorf("record %q of the aborted batch visible", r.value)
		}
	}
	for _, r := range next {
		if got[string(r.value)] == nil {
			t.Errorf("record %q of the committed batch not visible", r.value)
		}
	}
}

// TestBatchAtomicConcurrent: more atomic batches at once than
// transactional producers: they wait for one and all commit.
func TestBatchAtomicConcurrent(t *testing.T) {
	c := threeBrokers(t)
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.TransactionalProducers = 2 })
	var wg sync.WaitGroup
	var sent [6][]brec
	for w := range 6 {
		wg.Go(func() {
			for b := range 3 {
				var recs []brec
				for i := range 50 {
					recs = append(recs, brec{key: "k" + strconv.Itoa(i%7), value: mp(t, fmt.Sprintf("w%d-b%d-%d", w, b, i))})
				}
				a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs))
				if a.code != 200 {
					t.Errorf("worker %d batch %d: %v", w, b, a)
					return
				}
				sent[w] = append(sent[w], recs...)
			}
		})
	}
	wg.Wait()
	got := byValue(t, c, topic)
	for w := range sent {
		for _, r := range sent[w] {
			if got[string(r.value)] == nil {
				t.Errorf("%q answered 200, not visible", r.value)
			}
		}
	}
	if len(got) != 6*3*50 {
		t.Errorf("%d records visible, want %d", len(got), 6*3*50)
	}
}

// TestBatchAtomicOff: transactional_producers: 0 refuses atomic batches.
func TestBatchAtomicOff(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.TransactionalProducers = 0 })
	a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{value: mp(t, 1)}}))
	if a.code != 400 || !strings.Contains(a.Error, "transactional_producers") {
		t.Errorf("atomic with transactional_producers 0: %v", a)
	}
}

// TestBatchAcks0: answered 200 at once, partitions unknown, no offsets;
// the records reach Kafka afterwards.
func TestBatchAcks0(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}})
	p := startProxy(t, c, nil)
	var recs []brec
	for i := range 50 {
		recs = append(recs, brec{key: "k" + strconv.Itoa(i%5), value: mp(t, i)})
	}
	a := p.postBatch(t, "topic="+topic+"&acks=0", "", mpBatch(t, recs))
	if a.code != 200 || len(a.Results) != 50 {
		t.Fatalf("acks=0 batch: %v", a)
	}
	for i, r := range a.Results {
		if r.Partition != -1 || r.Offset != nil {
			t.Fatalf("result %d: %+v, want partition -1 without an offset", i, r)
		}
	}
	waitFor(t, "50 acks=0 records in Kafka", func() bool { return endOffsets(t, c, topic) == 50 })
}

// TestBatchOverload: a batch's records count against req_pool_size one by
// one: a batch larger than it is 413, one that does not fit beside the
// records in flight is 503 (not written).
func TestBatchOverload(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ReqPoolSize = 10 })
	recs := func(n int, label string) []byte {
		var rs []brec
		for i := range n {
			rs = append(rs, brec{key: "k", value: mp(t, label+strconv.Itoa(i))})
		}
		return mpBatch(t, rs)
	}
	if a := p.postBatch(t, "topic="+topic, "", recs(11, "big")); a.code != 413 || !strings.Contains(a.Error, "req_pool_size") {
		t.Errorf("11 records, req_pool_size 10: %v", a)
	}
	release := make(chan struct{})
	var held atomic.Int32
	holdProduce(c, release, &held)
	first := make(chan batchAnswer, 1)
	go func() { first <- p.postBatch(t, "topic="+topic, "", recs(8, "held")) }()
	waitFor(t, "8 records in flight", func() bool { return p.srv.InFlight() == 8 })
	a := p.postBatch(t, "topic="+topic, "", recs(3, "over"))
	if a.code != 503 || a.hdr.Get("Retry-After") == "" || !strings.Contains(a.Error, "req_pool_size") {
		t.Errorf("3 more records: %v, want 503 + Retry-After", a)
	}
	close(release)
	if a := <-first; a.code != 200 {
		t.Errorf("held batch: %v", a)
	}
	if n := endOffsets(t, c, topic); n != 8 {
		t.Errorf("%d records in Kafka, want the held batch's 8", n)
	}
}

// TestBatchHostile: the largest batch of tiny records, values nested a
// hundred thousand levels deep, a header count in the millions, an array
// claiming four billion records: each answered within seconds, the good
// ones written byte-for-byte.
func TestBatchHostile(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 4}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.MaxRequestSizeBytes = 4 << 20 })
	timed := func(what string, f func()) {
		t.Helper()
		start := time.Now()
		f()
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s took %v", what, d)
		}
	}
	timed("10,000 tiny records", func() {
		var recs []brec
		for i := range 10_000 {
			recs = append(recs, brec{key: strconv.Itoa(i % 100), value: mp(t, i)})
		}
		a := p.postBatch(t, "topic="+topic, "", mpBatch(t, recs))
		if a.code != 200 || len(a.Results) != 10_000 {
			t.Fatalf("10,000 records: %.200v", a)
		}
		if n := endOffsets(t, c, topic); n != 10_000 {
			t.Errorf("%d records in Kafka", n)
		}
		recs = append(recs, brec{value: mp(t, 0)})
		if a := p.postBatch(t, "topic="+topic, "", mpBatch(t, recs)); a.code != 413 || a.index() != 10_000 {
			t.Errorf("10,001 records: %v", a)
		}
	})
	deepMP := append(bytes.Repeat([]byte{0x91}, 300_000), 0xc0)
	deepJSON := []byte(strings.Repeat("[", 200_000) + strings.Repeat("]", 200_000))
	timed("deep values", func() {
		for _, tc := range []struct {
			ctype string
			body  []byte
			value []byte
		}{
			{"", mpBatch(t, []brec{{value: deepMP}}), deepMP},
			{"application/json", jsonBatch([]brec{{value: deepJSON}}), deepJSON},
		} {
			a := p.postBatch(t, "topic="+topic+"&acks=-1", tc.ctype, tc.body)
			if a.code != 200 {
				t.Fatalf("deep value %q: %v", tc.ctype, a)
			}
			if m := readRecord(t, c, topic, a.Results[0].Partition, *a.Results[0].Offset); !bytes.Equal(m.Value, tc.value) {
				t.Errorf("deep value %q: %d bytes written, %d sent", tc.ctype, len(m.Value), len(tc.value))
			}
		}
		// Nested one level short: refused, nothing written.
		if a := p.postBatch(t, "topic="+topic, "", mpBatch(t, []brec{{value: mp(t, 1)}})[:1]); a.code != 400 {
			t.Errorf("truncated: %v", a)
		}
		if a := p.postBatch(t, "topic="+topic, "application/json", jsonBatch([]brec{{value: deepJSON[1:]}})); a.code != 400 {
			t.Errorf("unbalanced deep JSON: %v", a)
		}
	})
	timed("huge header counts", func() {
		// A record with a million headers (a map32 of them).
		h := []byte{0x81, 0xa7, 'h', 'e', 'a', 'd', 'e', 'r', 's', 0xdf, 0x00, 0x0f, 0x42, 0x40}
		for i := range 1_000_000 {
			h = append(h, 0xa1, byte('a'+i%26), 0xa0)
		}
		body := append([]byte{0x91, 0x82, 0xa5, 'v', 'a', 'l', 'u', 'e', 0x01}, h[1:]...)
		if a := p.postBatch(t, "topic="+topic, "", body); a.code != 400 || a.index() != 0 || !strings.Contains(a.Error, "64") {
			t.Errorf("a million headers: %v", a)
		}
		var js strings.Builder
		js.WriteString(`[{"value":1,"headers":{`)
		for i := range 100_000 {
			if i > 0 {
				js.WriteString(",")
			}
			fmt.Fprintf(&js, `"h%d":"x"`, i)
		}
		js.WriteString("}}]")
		if a := p.postBatch(t, "topic="+topic, "application/json", []byte(js.String())); a.code != 400 || !strings.Contains(a.Error, "64") {
			t.Errorf("100,000 JSON headers: %v", a)
		}
	})
	timed("array claiming 4 billion records", func() {
		body := []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0x81, 0xa5, 'v', 'a', 'l', 'u', 'e', 0x01}
		if a := p.postBatch(t, "topic="+topic, "", body); a.code != 413 && a.code != 400 {
			t.Errorf("claimed 4 billion: %v", a)
		}
	})
	if n := endOffsets(t, c, topic); n != 10_002 {
		t.Errorf("%d records in Kafka, want the 10,000 and the two deep values", n)
	}
}
