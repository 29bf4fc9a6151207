package kproxy_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestLoweredTopicLimitRecordsThatFitWritten: the topic's max.message.bytes
// is lowered while kproxy runs (it read the old one). Records of 1 kB, each
// far below the new 3,000 bytes, arrive together and kgo batches them
// beyond it: the broker refuses the batch (MESSAGE_TOO_LARGE), and kgo fails
// every record buffered for the partition with it. None of them is too
// large, and 413 tells a client its record can never be taken, so it drops
// it. Each is written and answered 200, exactly once, or answered 503 and
// not in Kafka (refused with the batch, or failed by the topic's purge
// before it left), or 504 when its batch may have been sent (at acks=-1
// twice; at acks=1 a batch built into a request before the purge failed
// it, which kproxy counts as may have left).
func TestLoweredTopicLimitRecordsThatFitWritten(t *testing.T) {
	for _, acks := range []string{"1", "-1"} {
		t.Run("acks="+acks, func(t *testing.T) {
			c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.LingerMs = 50 })
			// kproxy reads the topic's limit (the default) at its first record.
			decode(t, p.post(t, "topic="+topic+"&acks="+acks, unique(t, "first")))
			setMaxMessageBytes(t, c, topic, 3000)

			const n = 20
			bodies := make([][]byte, n)
			answers := make([]answer, n)
			var wg sync.WaitGroup
			for i := range n {
				bodies[i] = unique(t, fmt.Sprintf("fits-%d-%s", i, strings.Repeat("x", 1000)))
				wg.Go(func() { answers[i] = p.post(t, "topic="+topic+"&key=k"+fmt.Sprint(i%3)+"&acks="+acks, bodies[i]) })
			}
			wg.Wait()
			kafka := inKafka(t, c)
			for i, a := range answers {
				got := kafka[string(bodies[i])]
				switch {
				case a.code == 200 && got != 1:
					t.Errorf("record %d answered 200 is in Kafka %d times", i, got)
				case a.code == 200:
				case a.code == 503:
					if got != 0 {
						t.Errorf("record %d answered 503 (%q) is in Kafka %d times", i, strings.TrimSpace(a.body), got)
					}
				case a.code == 504 && got <= 1:
				default:
					t.Errorf("record %d of %d bytes (the topic takes 3000): %d %q, want 200", i, len(bodies[i]), a.code, strings.TrimSpace(a.body))
				}
			}
		})
	}
}

// TestLoweredTopicLimitAcks0BatchesShrink: after the topic's
// max.message.bytes is lowered, acks=0 records (answered at once, no
// request left to send them again) refused with an oversized batch are
// counted lost; but kproxy must then build the topic's batches to the new
// limit, so that later records that each fit are delivered, not lost wave
// after wave.
func TestLoweredTopicLimitAcks0BatchesShrink(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.LingerMs = 50 })
	decode(t, p.post(t, "topic="+topic+"&acks=1", unique(t, "first")))
	setMaxMessageBytes(t, c, topic, 3000)

	const n, waves = 20, 5
	done := func() int { // acks=0 records delivered or lost
		var d, l int
		fmt.Sscan(p.metric(t, `kproxy_records_total{acks="0"}`), &d)
		fmt.Sscan(p.metric(t, "kproxy_acks0_lost_records_total"), &l)
		return d + l
	}
	for w := range waves {
		var bodies [][]byte
		var wg sync.WaitGroup
		for i := range n {
			body := unique(t, fmt.Sprintf("wave-%d-%d-%s", w, i, strings.Repeat("x", 1000)))
			bodies = append(bodies, body)
			wg.Go(func() {
				if a := p.post(t, "topic="+topic+"&key=k"+fmt.Sprint(i%3)+"&acks=0", body); a.code != 200 {
					t.Errorf("acks=0 record: %d %q", a.code, a.body)
				}
			})
		}
		wg.Wait()
		waitFor(t, "the wave's acks=0 records delivered or counted lost", func() bool { return done() == (w+1)*n })
		kafka := inKafka(t, c)
		missing := 0
		for _, b := range bodies {
			if kafka[string(b)] == 0 {
				missing++
			}
		}
		t.Logf("wave %d: %d of %d records of 1 kB lost (the topic takes 3000 bytes)", w, missing, n)
		if missing == 0 {
			return
		}
	}
	t.Errorf("in %d waves of %d acks=0 records, each far below the topic's lowered max.message.bytes, none was delivered whole: kproxy's batches still exceed the limit", waves, n)
}

// TestLoweredTopicLimitBatchRecordsThatFitNot413: as above, through
// /batch: one request of 20 records of 1 kB, each far below the topic's
// lowered max.message.bytes (3,000 bytes), checked against the old one
// and batched by kgo beyond the new one. A record the broker refused only
// with that batch must not be answered 413 (too large: never sent again),
// but 503 (not written), and must not be in Kafka. At acks=-1 a record
// whose client wrote more than one produce request since it was handed
// over is answered 504 instead (the refusal may be of a retry of a batch
// the broker had written: README), and must not be in Kafka twice.
func TestLoweredTopicLimitBatchRecordsThatFitNot413(t *testing.T) {
	for _, acks := range []string{"1", "-1"} {
		t.Run("acks="+acks, func(t *testing.T) {
			c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			p := startProxy(t, c, nil)
			decode(t, p.post(t, "topic="+topic+"&acks="+acks, unique(t, "first")))
			setMaxMessageBytes(t, c, topic, 3000)

			var recs []brec
			for i := range 20 {
				recs = append(recs, brec{key: "k" + fmt.Sprint(i%3), value: unique(t, fmt.Sprintf("batch-%d-%s", i, strings.Repeat("x", 1000)))})
			}
			a := p.postBatch(t, "topic="+topic+"&acks="+acks, "", mpBatch(t, recs))
			kafka := inKafka(t, c)
			if len(a.Results) != len(recs) {
				if a.code == 413 || a.code == 200 && kafka[string(recs[0].value)] != 1 {
					t.Fatalf("batch: %v", a)
				}
				for i, r := range recs { // answered as a whole
					if got := kafka[string(r.value)]; a.code != 200 && got != 0 {
						t.Errorf("record %d of a batch answered %d is in Kafka %d times", i, a.code, got)
					}
				}
				return
			}
			for i, r := range a.Results {
				got := kafka[string(recs[i].value)]
				switch {
				case r.Status == 200 && got != 1:
					t.Errorf("record %d answered 200 is in Kafka %d times", i, got)
				case r.Status == 200:
				case r.Status == 503 && got != 0:
					t.Errorf("record %d answered 503 (%q) is in Kafka %d times", i, r.Error, got)
				case r.Status == 503:
				case r.Status == 504 && acks == "-1" && got > 1:
					t.Errorf("record %d answered 504 is in Kafka %d times", i, got)
				case r.Status == 504 && acks == "-1":
				default:
					t.Errorf("record %d of %d bytes (the topic takes 3000): %d %q, want 200 or 503 (or 504 at acks=-1)", i, len(recs[i].value), r.Status, r.Error)
				}
			}
		})
	}
}

// TestLoweredTopicLimitPurgeLoggedAsSuch: kproxy purges a topic from its
// acks=1 client after a batch of it was refused as too large (its
// max.message.bytes lowered). Its log must say so, and not that the topic
// was deleted, perhaps re-created: an operator reading it would look for
// what did not happen.
func TestLoweredTopicLimitPurgeLoggedAsSuch(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	var logs runtest.Log
	p := logProxy(t, c, &logs, func(cfg *kproxy.Config) { cfg.LingerMs = 50 })
	decode(t, p.post(t, "topic="+topic+"&acks=1", unique(t, "first")))
	setMaxMessageBytes(t, c, topic, 3000)

	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			p.post(t, "topic="+topic+"&key=k&acks=1", unique(t, fmt.Sprintf("fits-%d-%s", i, strings.Repeat("x", 1000))))
		})
	}
	wg.Wait()
	// The purge is logged once the new limit is read, in the background:
	// perhaps after the records were answered.
	var purges []string
	deadline := time.Now().Add(10 * time.Second)
	for len(purges) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "purg") {
				purges = append(purges, l)
			}
		}
	}
	if len(purges) == 0 {
		t.Fatalf("no purge logged within 10 s after a batch refused as too large:\n%s", logs.String())
	}
	for _, l := range purges {
		if strings.Contains(l, "deleted") {
			t.Errorf("the purge after a batch refused as too large is logged as of a deleted topic: %s", l)
		}
	}
}

// TestLoweredTopicLimitLaterRecordOfKeyNotBefore: after the topic's
// max.message.bytes is lowered, records A0..A3 of key k, each fitting, are
// refused with the batch kgo built beyond the limit. Record D of the same
// key arrives after them, while they are not answered yet (the new limit
// is still being read: the broker sits on a DescribeConfigs request), and
// is answered 200. No record of k answered 200 may be written after D: a
// key's records stay in the order kproxy took them.
func TestLoweredTopicLimitLaterRecordOfKeyNotBefore(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.LingerMs = 50 })
	decode(t, p.post(t, "topic="+topic+"&acks=1", unique(t, "first")))
	setMaxMessageBytes(t, c, topic, 3000)

	var refused, held atomic.Bool
	release := make(chan struct{})
	unhold := sync.OnceFunc(func() { close(release) })
	defer unhold()
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		for _, rt := range req.(*kmsg.ProduceRequest).Topics {
			for _, rp := range rt.Partitions {
				if len(rp.Records) > 3000 {
					refused.Store(true) // the broker refuses it
				}
			}
		}
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.DescribeConfigs), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if refused.Load() && !held.Swap(true) {
			c.SleepControl(func() {
				select {
				case <-release:
				case <-time.After(2 * time.Second): // D's look-up of the limit waits behind it
				}
			})
		}
		return nil, nil, false
	})
	const n = 4
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		body := unique(t, fmt.Sprintf("A%d-%s", i, strings.Repeat("x", 1000)))
		wg.Go(func() { answers[i] = p.post(t, "topic="+topic+"&key=k&acks=1", body) })
	}
	waitFor(t, "the batch refused and the new limit's reading held", held.Load)
	da := p.post(t, "topic="+topic+"&key=k&acks=1", unique(t, "D"))
	unhold()
	wg.Wait()
	if (da.code == 503 || da.code == 504) && strings.Contains(da.body, "purged while buffered") {
		// D reached Kafka's client after the new limit was read and before
		// the purge that rebuilds the topic's batches to it (a loaded
		// machine widens that gap): failed with the records buffered then,
		// as README says: 503, or 504 when a batch was built into a
		// request meanwhile (it may have left). Not answered 200, it
		// promises no place in k's order.
		t.Logf("D buffered at the purge: %d %s", da.code, da.body)
		return
	}
	d := decode(t, da)
	for i, a := range answers {
		if a.code != 200 {
			continue
		}
		if r := decode(t, a); *r.Offset > *d.Offset {
			t.Errorf("record A%d of key k, taken before D, answered 200 at offset %d, after D's %d", i, *r.Offset, *d.Offset)
		}
	}
}

// TestLoweredTopicLimitAtomicBatchesWrittenAgain: the topic's
// max.message.bytes is lowered after the transactional clients learnt its
// partitions (they build batches to the limit read then). An atomic batch
// whose records each fit but together pass the new limit is refused by
// the broker (MESSAGE_TOO_LARGE) and answered 503, its transaction
// aborted; but the same batch sent again must be written within seconds,
// not refused by the same client until kproxy restarts.
func TestLoweredTopicLimitAtomicBatchesWrittenAgain(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := startProxy(t, c, func(cfg *kproxy.Config) {
		cfg.TransactionalProducers = 1
		cfg.ProduceTimeoutMs = 3000
	})
	batch := func(v string) batchAnswer {
		recs := make([]brec, 5)
		for i := range recs {
			recs[i] = brec{key: "k", value: mp(t, fmt.Sprintf("%s-%d-%s", v, i, strings.Repeat("x", 1000)))}
		}
		return p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs))
	}
	if a := batch("before"); a.code != 200 {
		t.Fatalf("atomic batch before the limit was lowered: %v", a)
	}
	setMaxMessageBytes(t, c, topic, 3000)

	codes := map[int]int{}
	start := time.Now()
	for n := 0; ; n++ {
		if time.Since(start) > 15*time.Second {
			t.Fatalf("lowered limit: no atomic batch of records that fit it written within 15 s: answers %v", codes)
		}
		a := batch(fmt.Sprintf("after-%03d", n))
		codes[a.code]++
		if a.code == 200 {
			break
		}
		if a.code != 503 {
			t.Fatalf("atomic batch after the limit was lowered: %v; want 200 or 503 (not written)", a)
		}
	}
	if codes[503] == 0 {
		t.Fatalf("the first atomic batch after the limit was lowered was written (%v): none was refused, the test proves nothing", codes)
	}
	t.Logf("lowered limit: an atomic batch written after %v; answers %v", time.Since(start).Round(time.Millisecond), codes)
}
