package kproxy_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The tests in this file attack the delivery guarantees of DESIGN.md
// ("Delivery guarantees", the 503/504 rule) with the faults of a real
// cluster: three kfake brokers, leader elections, dropped connections,
// answers lost after the append, held requests, a broker leaving.

// unique is a msgpack string body no other request of the test sends.
func unique(t testing.TB, s string) []byte {
	t.Helper()
	b, err := msgpack.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// inKafka counts each value of topic's records, read back read_committed.
func inKafka(t testing.TB, c *kfake.Cluster) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		n[string(r.Value)]++
	}
	return n
}

// history is what kproxy answered, body by body.
type history struct {
	mu      sync.Mutex
	answers map[string]int // body → status
}

func (h *history) add(body []byte, code int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.answers == nil {
		h.answers = map[string]int{}
	}
	h.answers[string(body)] = code
}

func (h *history) codes() map[int]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[int]int{}
	for _, c := range h.answers {
		out[c]++
	}
	return out
}

// load posts unique bodies from workers goroutines for d at acks and
// records every answer. Each worker has its own key.
func load(t *testing.T, p *proxy, h *history, label, acks string, workers int, d time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				body := unique(t, fmt.Sprintf("%s-w%d-%d", label, w, i))
				resp, err := client.Post(p.url+"/commit?topic="+topic+"&acks="+acks+"&key=k"+strconv.Itoa(w),
					"application/msgpack", strings.NewReader(string(body)))
				if err != nil {
					t.Errorf("POST: %v", err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				h.add(body, resp.StatusCode)
			}
		})
	}
	wg.Wait()
}

// check compares a history with the topic: every 200 is in Kafka, and at
// acks=-1 nothing is there twice. It returns the duplicates seen.
func check(t *testing.T, h *history, kafka map[string]int, idempotent bool) (dups int) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var missing []string
	for body, code := range h.answers {
		n := kafka[body]
		if code == 200 && n == 0 {
			missing = append(missing, body)
		}
		if n > 1 {
			dups += n - 1
			if idempotent {
				t.Errorf("%q is in Kafka %d times at acks=-1", body, n)
			}
		}
		if code == 503 && n > 0 {
			t.Errorf("%q answered 503 (not written) but is in Kafka", body)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d records answered 200 are not in Kafka, e.g. %q", len(missing), missing[0])
	}
	return dups
}

// TestLeaderShufflesUnderLoad moves every partition's leader every 150 ms
// while 8 clients write at each acks level: at acks 1 and -1 every request
// is answered 200 (elections are retried inside produce_timeout_ms), and at
// every level, acks=0 included, every 200 is in Kafka: no acks=0 record is
// given up. Kafka was read before the acks=0 records still being retried
// through the last shuffle were delivered, which a loaded machine showed
// as records lost.
func TestLeaderShufflesUnderLoad(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 6}})
	p := startProxy(t, c, nil)
	f := kafkatest.NewFaults(t, c)
	stop := f.ShuffleEvery(150 * time.Millisecond)
	var hs [3]history
	for i, acks := range []string{"1", "-1", "0"} {
		load(t, p, &hs[i], "acks"+acks, acks, 8, 1500*time.Millisecond)
	}
	shuffles := stop()
	// acks=0 records are answered before they are delivered: read Kafka
	// once each is delivered or given up (Kafka read earlier misses
	// those still retried through the last shuffle), and none given up.
	acks0 := hs[2].codes()[200]
	waitFor(t, "every acks=0 record answered 200 delivered or given up", func() bool {
		return metricInt(t, p, `kproxy_records_total{acks="0"}`)+metricInt(t, p, "kproxy_acks0_lost_records_total") >= acks0
	})
	if n := metricInt(t, p, "kproxy_acks0_lost_records_total"); n != 0 {
		t.Errorf("%d acks=0 records given up under leader shuffles (kproxy_acks0_lost_records_total), want 0: elections are retried inside produce_timeout_ms", n)
	}
	kafka := inKafka(t, c)
	for i, acks := range []string{"1", "-1", "0"} {
		codes := hs[i].codes()
		dups := check(t, &hs[i], kafka, acks == "-1")
		t.Logf("acks=%s: answers %v, duplicates %d, %d leader shuffles in all", acks, codes, dups, shuffles)
		if acks != "0" && len(codes) != 1 {
			t.Errorf("acks=%s under leader shuffles: answers %v, want every one 200", acks, codes)
		}
		if codes[200] < 20 {
			t.Errorf("acks=%s: only %d requests answered 200", acks, codes[200])
		}
	}
}

// TestConnectionClosedMidRequest: the broker closes the connection instead
// of answering; the record is sent again and answered 200, once in Kafka at
// acks=-1.
func TestConnectionClosedMidRequest(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, nil)
	f := kafkatest.NewFaults(t, c)
	for _, acks := range []string{"1", "-1"} {
		f.CloseConn(int16(kmsg.Produce), 2)
		body := unique(t, "closed-acks"+acks)
		if a := p.post(t, "topic="+topic+"&key=k&acks="+acks, body); a.code != 200 {
			t.Fatalf("acks=%s, connection closed twice: %d %q, want 200", acks, a.code, a.body)
		}
		if n := inKafka(t, c)[string(body)]; acks == "-1" && n != 1 {
			t.Errorf("acks=-1: record in Kafka %d times, want once", n)
		}
	}
	if f.Injected() < 4 {
		t.Errorf("%d faults injected, want 4", f.Injected())
	}
}

// TestAmbiguousThenDefiniteIs504: the first produce request is written but
// its answer is lost (the connection closes after the append); the retry is
// refused with a final error. The record is in Kafka, so the answer must be
// 504 "may have been written", not the refusal's 400.
func TestAmbiguousThenDefiniteIs504(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 3000 })
	f := kafkatest.NewFaults(t, c)
	for _, acks := range []string{"1", "-1"} {
		decode(t, p.post(t, "topic="+topic+"&key=k&acks="+acks, []byte{0x01})) // connections are up
		f.AppendThen(1, 0)
		f.ErrorProduce(1, 87) // then INVALID_RECORD: final
		body := unique(t, "ambiguous-acks"+acks)
		a := p.post(t, "topic="+topic+"&key=k&acks="+acks, body)
		if n := inKafka(t, c)[string(body)]; n != 1 {
			t.Fatalf("acks=%s: the fault should have appended the record once, found %d (answer %d %q)", acks, n, a.code, a.body)
		}
		if a.code != 504 || !strings.Contains(a.body, "may have been written") {
			t.Errorf("acks=%s, answer lost then INVALID_RECORD: %d %q, want 504 \"may have been written\"", acks, a.code, a.body)
		}
	}
}

// TestQueuedPastDeadlineNeverWritten holds the partition's produce request
// at the broker past produce_timeout_ms while more records queue behind it
// in kproxy: they are answered (504 or 503) at their deadline; none reaches
// the broker after its deadline, and none answered 503 is ever written.
// (A record sent before its deadline and answered 504 may be written:
// that is what 504 says.) At acks=-1 kgo pipelines the queued records onto
// the held request's connection at once (up to four requests per broker),
// and the broker reads a connection's next request only once it answered
// the one before: they reach it after the release although they left
// before their deadline, so the arrival check is for acks 0 and 1 (one
// request per broker out); TestQueuedPastDeadlineNeverWrittenIdempotent
// holds acks=-1 records before anything is sent.
func TestQueuedPastDeadlineNeverWritten(t *testing.T) {
	for _, acks := range []string{"1", "0", "-1"} {
		t.Run("acks="+acks, func(t *testing.T) {
			const timeout = 500 * time.Millisecond
			c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = int(timeout / time.Millisecond) })
			decode(t, p.post(t, "topic="+topic+"&key=k&acks="+acks, unique(t, "warm-up")))
			waitFor(t, "the warm-up record", func() bool { return inKafka(t, c)[string(unique(t, "warm-up"))] == 1 })
			arrivals := watchProduce(c)
			release := make(chan struct{})
			var held atomic.Int32
			holdProduce(c, release, &held)
			first := make(chan answer, 1)
			go func() { first <- p.post(t, "topic="+topic+"&key=k&acks="+acks, unique(t, "in-flight")) }()
			waitFor(t, "the first request at the broker", func() bool { return held.Load() > 0 })
			var wg sync.WaitGroup
			queued := make([]string, 5)
			posted := make([]time.Time, 5)
			codes := make([]int, 5)
			for i := range queued {
				queued[i] = string(unique(t, "queued-"+strconv.Itoa(i)))
				wg.Go(func() {
					posted[i] = time.Now()
					a := p.post(t, "topic="+topic+"&key=k&acks="+acks, []byte(queued[i]))
					codes[i] = a.code
					if acks == "0" && a.code != 200 || acks != "0" && a.code != 504 && a.code != 503 {
						t.Errorf("queued record %d: %d %q", i, a.code, a.body)
					}
				})
			}
			wg.Wait()
			<-first
			if acks == "0" {
				// Answered at once: wait until kproxy gave them up.
				waitFor(t, "the queued acks=0 records given up", func() bool {
					n, _ := strconv.Atoi(p.metric(t, "kproxy_acks0_lost_records_total"))
					return n >= len(queued)
				})
			}
			close(release)
			// The broker answers again: a record after them goes through.
			decode(t, p.post(t, "topic="+topic+"&key=k&acks=1", unique(t, "after")))
			kafka := inKafka(t, c)
			for i, q := range queued {
				if at, ok := arrivals.first(q); ok && acks != "-1" && at.Sub(posted[i]) > timeout+100*time.Millisecond {
					t.Errorf("%q reached the broker %v after it was posted, past its deadline of %v", q, at.Sub(posted[i]), timeout)
				}
				if codes[i] == 503 && kafka[q] > 0 {
					t.Errorf("%q was answered 503 (not written) and is in Kafka", q)
				}
			}
		})
	}
}

// produceArrivals remembers when each produce request reached the broker
// and the raw bytes of its record batches.
type produceArrivals struct {
	mu   sync.Mutex
	reqs []arrival
}

type arrival struct {
	at      time.Time
	batches [][]byte
}

// watchProduce records every produce request c receives, before any other
// control function sees it (call it before adding others).
func watchProduce(c *kfake.Cluster) *produceArrivals {
	pa := &produceArrivals{}
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		a := arrival{at: time.Now()}
		for _, tp := range req.(*kmsg.ProduceRequest).Topics {
			for _, pp := range tp.Partitions {
				a.batches = append(a.batches, append([]byte(nil), pp.Records...))
			}
		}
		pa.mu.Lock()
		pa.reqs = append(pa.reqs, a)
		pa.mu.Unlock()
		return nil, nil, false
	})
	return pa
}

// first is when a request carrying value (uncompressed) first reached the
// broker.
func (pa *produceArrivals) first(value string) (time.Time, bool) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	for _, a := range pa.reqs {
		for _, b := range a.batches {
			if bytes.Contains(b, []byte(value)) {
				return a.at, true
			}
		}
	}
	return time.Time{}, false
}

// TestQueuedPastDeadlineNeverWrittenIdempotent: at acks=-1 records wait in
// kproxy until the producer ID comes (InitProducerID held past their
// deadline); answered at their deadline, they are never written after.
func TestQueuedPastDeadlineNeverWrittenIdempotent(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 500 })
	f := kafkatest.NewFaults(t, c)
	f.Sleep(int16(kmsg.InitProducerID), 1, 4*time.Second) // well past produce_timeout_ms on a loaded machine too
	var queued []string
	var wg sync.WaitGroup
	for i := range 5 {
		body := unique(t, "queued-idempotent-"+strconv.Itoa(i))
		queued = append(queued, string(body))
		wg.Go(func() {
			if a := p.post(t, "topic="+topic+"&key=k&acks=-1", body); a.code != 503 && a.code != 504 {
				t.Errorf("record %d queued past its deadline: %d %q", i, a.code, a.body)
			}
		})
	}
	wg.Wait()
	if f.Injected() != 1 {
		t.Fatalf("InitProducerID was not held: the records were not queued")
	}
	// Once the producer ID comes, a new record goes through; the queued
	// ones must not.
	waitFor(t, "a record after the held producer ID", func() bool {
		return p.post(t, "topic="+topic+"&key=k&acks=-1", unique(t, "after")).code == 200
	})
	kafka := inKafka(t, c)
	for _, q := range queued {
		if kafka[q] > 0 {
			t.Errorf("%q was answered at its deadline while queued, and written afterwards", q)
		}
	}
}

// TestBatchesFitTopicMaxMessageBytes: a topic whose max.message.bytes
// (3000) is far below max_message_bytes. Records of 900 bytes posted
// together form batches; each batch must fit the topic's limit, so every
// record is written and answered 200 (before: the broker refused the
// batches as MESSAGE_TOO_LARGE and every record got 413). A record larger
// than the topic's limit is 413 at once, naming it.
func TestBatchesFitTopicMaxMessageBytes(t *testing.T) {
	const limit = 3000
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	setMaxMessageBytes(t, c, topic, limit)
	arrivals := watchProduce(c)
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.LingerMs = 20 })
	for _, acks := range []string{"1", "-1"} {
		var wg sync.WaitGroup
		var bodies []string
		for i := range 20 {
			body := unique(t, fmt.Sprintf("fit-acks%s-%d-%s", acks, i, strings.Repeat("x", 880)))
			bodies = append(bodies, string(body))
			wg.Go(func() {
				if a := p.post(t, "topic="+topic+"&key=k"+strconv.Itoa(i)+"&acks="+acks, body); a.code != 200 {
					t.Errorf("acks=%s record %d: %d %q, want 200", acks, i, a.code, a.body)
				}
			})
		}
		wg.Wait()
		kafka := inKafka(t, c)
		for _, b := range bodies {
			if kafka[b] != 1 {
				t.Errorf("acks=%s: a record is in Kafka %d times", acks, kafka[b])
			}
		}
	}
	several, largest := arrivals.batches()
	if several == 0 {
		t.Errorf("no batch of several records was formed: the test proves nothing")
	}
	if largest > limit {
		t.Errorf("a batch of %d bytes was sent to a topic taking %d", largest, limit)
	}
	a := p.post(t, "topic="+topic+"&key=k", unique(t, strings.Repeat("y", limit)))
	if a.code != 413 || !strings.Contains(a.body, "max.message.bytes (3000)") {
		t.Errorf("a record over the topic's limit: %d %q, want 413 naming max.message.bytes", a.code, a.body)
	}
}

// batches counts the produce batches of several records and the largest
// batch in bytes.
func (pa *produceArrivals) batches() (several, largest int) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	for _, a := range pa.reqs {
		for _, raw := range a.batches {
			var b kmsg.RecordBatch
			if b.ReadFrom(raw) == nil && b.NumRecords > 1 {
				several++
			}
			largest = max(largest, len(raw))
		}
	}
	return several, largest
}

// TestCompressionShrinks: each codec makes a compressible record smaller
// on the wire than it is, and the record reads back unchanged.
func TestCompressionShrinks(t *testing.T) {
	body := unique(t, strings.Repeat("kafka-http-wrapper ", 200)) // 3,800 bytes
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run(codec, func(t *testing.T) {
			c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.Compression = codec })
			var wire atomic.Int64
			c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				for _, rt := range r.(*kmsg.ProduceRequest).Topics {
					for _, rp := range rt.Partitions {
						wire.Store(int64(len(rp.Records)))
					}
				}
				return nil, nil, false
			})
			decode(t, p.post(t, "topic="+topic+"&key=k", body))
			n := wire.Load()
			switch {
			case codec == "none" && n < int64(len(body)):
				t.Errorf("uncompressed batch of %d bytes for a %d-byte record", n, len(body))
			case codec != "none" && n > int64(len(body))/4:
				t.Errorf("%s: batch of %d bytes for a %d-byte record of one repeated phrase", codec, n, len(body))
			}
			if got := inKafka(t, c); got[string(body)] != 1 {
				t.Errorf("record not read back unchanged: %v", len(got))
			}
		})
	}
}

// TestBrokerRemovedAndReadded removes the leader of a partition under load
// and adds it back: every request is answered 200 and in Kafka.
func TestBrokerRemovedAndReadded(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, nil)
	for _, acks := range []string{"1", "-1"} {
		var h history
		done := make(chan struct{})
		go func() {
			defer close(done)
			load(t, p, &h, "removed-acks"+acks, acks, 4, 2*time.Second)
		}()
		waitFor(t, "the load running", func() bool { // answers coming (or, on a slow machine, the load over)
			select {
			case <-done:
				return true
			default:
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			return len(h.answers) >= 10
		})
		node := c.LeaderFor(topic, 0)
		if err := c.RemoveNode(node); err != nil {
			t.Fatalf("remove node %d: %v", node, err)
		}
		time.Sleep(500 * time.Millisecond)
		if _, _, err := c.AddNode(node, 0); err != nil {
			t.Fatalf("add node %d back: %v", node, err)
		}
		<-done
		codes := h.codes()
		t.Logf("acks=%s, node %d removed and added back: answers %v", acks, node, codes)
		if len(codes) != 1 || codes[200] == 0 {
			t.Errorf("acks=%s: answers %v, want every one 200", acks, codes)
		}
		check(t, &h, inKafka(t, c), acks == "-1")
	}
}

// TestIdempotentNoDuplicateWhenAnswerLost: at acks=-1 the broker writes the
// record and its answer is lost (connection closed, or REQUEST_TIMED_OUT);
// the retry must not write it a second time.
func TestIdempotentNoDuplicateWhenAnswerLost(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	p := startProxy(t, c, nil)
	f := kafkatest.NewFaults(t, c)
	for _, code := range []int16{0, 7, 20} {
		f.AppendThen(1, code)
		body := unique(t, "lost-answer-"+strconv.Itoa(int(code)))
		if a := p.post(t, "topic="+topic+"&key=k&acks=-1", body); a.code != 200 {
			t.Errorf("answer lost (%d): %d %q, want 200", code, a.code, a.body)
		}
		if n := inKafka(t, c)[string(body)]; n != 1 {
			t.Errorf("answer lost (%d): record in Kafka %d times, want once", code, n)
		}
	}
}

// setMaxMessageBytes sets topic's max.message.bytes on the cluster.
func setMaxMessageBytes(t *testing.T, c *kfake.Cluster, topic string, limit int) {
	t.Helper()
	setTopicConfig(t, c, topic, "max.message.bytes", strconv.Itoa(limit))
}

// setTopicConfig sets a configuration key of topic on the cluster.
func setTopicConfig(t *testing.T, c *kfake.Cluster, topic, name, value string) {
	t.Helper()
	adm := kadm.NewClient(kafkatest.Client(t, c, kafkaconf.Default()))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: name, Value: kadm.StringPtr(value)}}, topic)
	if err == nil {
		_, err = resp.On(topic, nil)
	}
	if err != nil {
		t.Fatalf("set %s: %v", name, err)
	}
}

// TestIdempotentInFlightPastDeadlineThenNextWritten: at acks=-1 a record's
// produce request is held at the broker past produce_timeout_ms (answered
// 504), then the broker writes it. The key's next record must be written
// too. If kgo gives up on the request that is out (cancelling an idempotent
// request in flight), it rewinds the partition's sequence number: the next
// record goes out with the sequence number of the written one, the broker
// takes it for a retry of that batch (same sequence, same record count),
// answers success with the old offset, and the record answered 200 is not
// in Kafka.
func TestIdempotentInFlightPastDeadlineThenNextWritten(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 300 })
	decode(t, p.post(t, "topic="+topic+"&key=k&acks=-1", unique(t, "warm-up"))) // producer ID, sequence 0
	release := make(chan struct{})
	var released atomic.Bool
	defer func() {
		if !released.Swap(true) {
			close(release)
		}
	}()
	var held atomic.Int32
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		// Only the next produce request; kept, not dropped: kfake drops a
		// control that slept without its lock, a race with a ControlKey
		// call.
		c.KeepControl()
		if !held.CompareAndSwap(0, 1) {
			return nil, nil, false
		}
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	heldBody := unique(t, "held-past-deadline")
	if a := p.post(t, "topic="+topic+"&key=k&acks=-1", heldBody); a.code != 504 || !strings.Contains(a.body, "may have been written") {
		t.Fatalf("record held at the broker past produce_timeout_ms: %d %q, want 504 \"may have been written\"", a.code, a.body)
	}
	if held.Load() != 1 {
		t.Fatalf("%d produce requests held, want 1", held.Load())
	}
	released.Store(true)
	close(release)
	waitFor(t, "the held request written", func() bool { return inKafka(t, c)[string(heldBody)] == 1 })

	for i := range 3 {
		body := unique(t, "after-"+strconv.Itoa(i))
		r := decode(t, p.post(t, "topic="+topic+"&key=k&acks=-1", body))
		if n := inKafka(t, c)[string(body)]; n != 1 {
			at := "no offset"
			if r.Offset != nil {
				at = "offset " + strconv.FormatInt(*r.Offset, 10)
			}
			t.Errorf("record %d after the held one answered 200 (%s), in Kafka %d times, want once", i, at, n)
		}
	}
}
