package kproxy

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// waitSpoolDrained waits until s's spool is empty, failing after 60 s.
func waitSpoolDrained(t *testing.T, s *spooler) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for s.sp.Stats().Records != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not drained in 60 s: records %d, drain errors %v", s.sp.Stats().Records, counterValue(s.m.drainErrors))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// TestSpoolDrainChunkWithinClientBuffer: a parked topic whose pause is
// over holds more than a chunk, and another topic's backlog was read
// ahead meanwhile: the drain hands the client at most a chunk, never more
// than its MaxBufferedRecords (kgo would fail the excess with
// ErrMaxBuffered, which is no refusal by Kafka).
func TestSpoolDrainChunkWithinClientBuffer(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}, {Name: "b", Partitions: 1}})
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolAfterMs = 200 })
	recs := func(topic string, n int) []spool.Record {
		r := make([]spool.Record, n)
		for i := range r {
			r[i] = spool.Record{Topic: topic, Key: []byte("k"), Value: []byte(topic + strconv.Itoa(i))}
		}
		return r
	}
	const parked = drainChunk * 3 / 2
	if _, err := s.sp.Append(recs("a", parked)); err != nil {
		t.Fatal(err)
	}
	// a's records were refused once and wait, parked, their pause over.
	p := &parkedTopic{topic: "a", retrying: true}
	for got := 0; got < parked; {
		es, err := s.sp.Read(context.Background(), drainRead)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			s.parkLocked(p, e)
		}
		got += len(es)
	}
	s.parked["a"] = p
	if _, err := s.sp.Append(recs("b", drainChunk)); err != nil {
		t.Fatal(err)
	}
	s.start()
	defer s.close(context.Background())
	waitSpoolDrained(t, s)
	if n := counterValue(s.m.drainErrors); n != 0 {
		t.Errorf("drain errors %v with every topic existing and writable: records failed by the drain client's own buffer limit", n)
	}
}

// TestSpoolDrainRefusalParksBeforeAnswered: Kafka refuses a record of
// topic T while its chunk is being set aside (setAside holds s.dmu; the
// promise waits for it to park T). The record must not count as answered
// before T is parked for the refusal: setAside, seeing it answered, would
// leave T unparked, and T's later records would go to the new client
// ahead of the refused record's retry.
func TestSpoolDrainRefusalParksBeforeAnswered(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "T", Partitions: 1}})
	s := testSpooler(t, c, nil)
	defer s.close(context.Background())
	chunk := make([]drainRec, 1)
	d := &chunk[0]
	d.e = spool.Entry{Seq: 5, Record: spool.Record{Topic: "T", Key: []byte("k"), Value: []byte("v5")}}
	d.rec.Context, d.wait = d, s.wait
	s.wait.n.Store(1)
	s.dmu.Lock() // setAside's, about to park the chunk's topics
	promised := make(chan struct{})
	go func() {
		defer close(promised)
		s.drained(&d.rec, kerr.TopicAuthorizationFailed) // the promise of the refused record
	}()
	// The promise runs as far as it goes without s.dmu.
	for deadline := time.Now().Add(500 * time.Millisecond); !d.answered.Load() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	s.parkAsideLocked(&asideChunk{chunk: chunk, wait: s.wait})
	p := s.parked["T"]
	s.dmu.Unlock()
	<-promised
	if p == nil {
		t.Fatalf("T not parked when its chunk was set aside, its record answered before parked for the refusal: T's later records go to the new client ahead of seq %d's retry", d.e.Seq)
	}
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if p := s.parked["T"]; p == nil || len(p.entries) != 1 || !p.aside {
		t.Errorf("after the refusal, T parked %+v, want seq 5 parked and T waiting for the chunk aside", p)
	}
}

// TestSpoolDrainReadsNoFurtherWhileOnlyParked: Kafka freezes, the drain's
// chunk of topic a is set aside and a parked. The records of a spooled
// then are not read and copied into memory while every record in the
// spool is a parked topic's (onlyParked); a record of topic b makes the
// drain read on, and after the thaw everything drains.
func TestSpoolDrainReadsNoFurtherWhileOnlyParked(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}, {Name: "b", Partitions: 1}})
	thawed := make(chan struct{})
	thaw := sync.OnceFunc(func() { close(thawed) })
	t.Cleanup(thaw) // before the cluster closes: it waits for the control
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		select {
		case <-thawed:
			return nil, nil, false
		default:
		}
		c.KeepControl()
		<-thawed
		return nil, nil, false
	})
	s := testSpooler(t, c, nil)
	s.start()
	defer s.close(context.Background())
	defer thaw() // first: close waits for the chunk set aside
	// spoolN appends n records of topic through the appender, as the
	// handlers do, and waits until they are in the spool.
	spoolN := func(topic string, n int) {
		g := s.gate(topic)
		items := make([]*spoolItem, n)
		for i := range items {
			items[i] = newSpoolItem(g, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte(topic + strconv.Itoa(i))}, false, time.Time{})
		}
		g.mu.Lock()
		g.queued += n
		g.mu.Unlock()
		s.push(items...)
		for _, it := range items {
			<-it.done
			if it.err != nil {
				t.Fatal(it.err)
			}
		}
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15 s", what)
			}
		}
	}
	locked := func(f func() bool) func() bool {
		return func() bool { s.dmu.Lock(); defer s.dmu.Unlock(); return f() }
	}
	parkedA := func() int {
		if p := s.parked["a"]; p != nil {
			return len(p.entries)
		}
		return -1
	}
	spoolN("a", 10)
	wait("a's chunk set aside", locked(func() bool { return len(s.aside) == 1 && s.parked["a"] != nil }))
	spoolN("a", 1000)
	wait("the drain waiting, all 1010 records a parked topic's",
		locked(func() bool { return s.onlyParked && s.sp.Stats().Records == 1010 }))
	s.dmu.Lock()
	n, bytes := parkedA(), s.parkedBytes
	s.dmu.Unlock()
	if n != 0 || bytes != 0 {
		t.Errorf("while Kafka is frozen the drain read a's records into memory: %d parked, %d bytes", n, bytes)
	}
	spoolN("b", 1)
	wait("the drain reading on to b's record, past a's 1000", locked(func() bool { return parkedA() == 1000 }))
	thaw()
	wait("the spool drained", func() bool { return s.sp.Stats().Records == 0 })
}

// TestSpoolDrainRefusedFirstChunkKeepsKeyOrder: Kafka refuses the drain's
// first produce request (TOPIC_AUTHORIZATION_FAILED, answered after
// 500 ms, while the next chunk is read from the spool): kgo fails the
// partition's records of the first chunk, which wait a pause and are
// produced again. The later chunks hold later records of the same keys;
// none may be written ahead of the refused ones.
func TestSpoolDrainRefusedFirstChunkKeepsKeyOrder(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	s := testSpooler(t, c, nil)
	const n, keys = 3 * drainChunk, 4
	recs := make([]spool.Record, n)
	for i := range recs {
		recs[i] = spool.Record{Topic: "t", Key: []byte("k" + strconv.Itoa(i%keys)), Value: []byte(strconv.Itoa(i))}
	}
	if _, err := s.sp.Append(recs); err != nil {
		t.Fatal(err)
	}
	f := kafkatest.NewFaults(t, c)
	f.Sleep(int16(kmsg.Produce), 1, 500*time.Millisecond)
	f.ErrorProduce(1, kerr.TopicAuthorizationFailed.Code)
	s.start()
	defer s.close(context.Background())
	waitSpoolDrained(t, s)
	if counterValue(s.m.drainErrors) == 0 {
		t.Fatalf("no refusal reached the drain (faults injected %d)", f.Injected())
	}
	last, seen := map[string]int{}, map[int]bool{}
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), "t") {
		i, err := strconv.Atoi(string(r.Value))
		if err != nil {
			t.Fatalf("value %q", r.Value)
		}
		if seen[i] {
			continue // a later copy
		}
		seen[i] = true
		if prev, ok := last[string(r.Key)]; ok && i < prev {
			t.Fatalf("key %s: record %d first written after record %d (offset %d)", r.Key, i, prev, r.Offset)
		}
		last[string(r.Key)] = i
	}
	if len(seen) != n {
		t.Fatalf("%d of %d records in Kafka", len(seen), n)
	}
}
