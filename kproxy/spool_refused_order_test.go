package kproxy_test

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolRefusedFlipKeepsKeyOrder: a record of key k is in a produce
// request the broker holds (a slow broker) when its topic starts
// spooling, and the spool refuses it (full): it is answered 504, "may
// have been written", since the broker may still write it. A later record
// of k taken into the spool meanwhile (202; the topic keeps spooling for
// a spool=0 record of another key still in kgo) must not reach Kafka
// before it: README's per-key order ("No later record of a key reaches
// Kafka before an earlier one's first copy").
func TestSpoolRefusedFlipKeepsKeyOrder(t *testing.T) {
	const hold = 4 * time.Second
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	// w, k and x in partitions of their own: a1 and x leave in a
	// request while w's is out (kgo sends one batch of a partition at a
	// time).
	part := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	in := func(key string) int { return part.Partition(&kgo.Record{Key: []byte(key)}, 3) }
	keys := map[int]string{}
	for i := 0; len(keys) < 3; i++ {
		key := "key" + strconv.Itoa(i)
		if _, ok := keys[in(key)]; !ok {
			keys[in(key)] = key
		}
	}
	kw, kk, kx := keys[0], keys[1], keys[2]
	p := spoolProxy(t, c, func(cfg *kproxy.Config) {
		cfg.SpoolMaxBytes = 1 << 20
		cfg.SpoolAfterMs = 300
		cfg.ProduceTimeoutMs = 6000
	})
	// A first answer lets the acks=-1 client have more than one produce
	// request out (kgo: 1 until then).
	warmUp(t, p, "acks=-1&topic="+topic+"&key="+kw, unique(t, "warm-up"))
	// The next produce request (w's) is held for hold before the broker
	// writes it; the requests after it on its connection wait behind it.
	arrived := make(chan struct{})
	var held atomic.Bool
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl() // every request after it is seen too, and let through
		if held.CompareAndSwap(false, true) {
			close(arrived)
			c.SleepControl(func() { time.Sleep(hold) })
		}
		return nil, nil, false
	})
	var wg sync.WaitGroup
	var w answer
	wg.Go(func() { w = p.post(t, "acks=-1&topic="+topic+"&key="+kw+"&spool=0", unique(t, "w")) })
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("w's produce request did not come")
	}
	// a1 and x go out behind it (idempotent: several requests out); at
	// spool_after_ms the topic spools, and the two (1.2 MB) do not fit
	// in the spool (1 MiB): refused, 504.
	code, a := postBatch(t, p, "acks=-1&topic="+topic, []map[string]any{
		{"key": kk, "value": "a1" + strings.Repeat("a", 600_000)},
		{"key": kx, "value": "x" + strings.Repeat("x", 600_000)},
	})
	if len(a.Results) != 2 || a.Results[0].Status != 504 {
		t.Fatalf("batch of a1 and x held by the broker, too large for the spool: %d %+v, want a1 504", code, a)
	}
	b := p.post(t, "acks=-1&topic="+topic+"&key="+kk, unique(t, "b"))
	if b.code != 202 {
		t.Fatalf("b, the next record of a1's key: %d %q, want 202 (its topic spools)", b.code, b.body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.metric(t, "kproxy_spool_records") != "0" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // polling the drain
	}
	wg.Wait()
	if w.code != 200 {
		t.Fatalf("w (spool=0): %d %q", w.code, w.body)
	}
	firstCopy := map[string]int64{} // value's start → offset of its first copy
	for _, r := range kafkatest.ReadAll(t, c, kafkaconf.Default(), topic) {
		var name string
		switch {
		case bytes.HasPrefix(r.Value, []byte(`"a1`)):
			name = "a1"
		case bytes.Equal(r.Value, unique(t, "b")):
			name = "b"
		default:
			continue
		}
		if _, ok := firstCopy[name]; !ok {
			firstCopy[name] = r.Offset
		}
	}
	a1, inA1 := firstCopy["a1"]
	bo, inB := firstCopy["b"]
	t.Logf("b answered %d; in kafka: a1 %v (offset %d), b %v (offset %d)", b.code, inA1, a1, inB, bo)
	if !inB {
		t.Fatalf("b answered 202 and not in Kafka")
	}
	if inA1 && inB && bo < a1 {
		t.Fatalf("b (answered %d) at offset %d, before the first copy of a1 (answered 504, written by the broker later) at %d: key k out of order", b.code, bo, a1)
	}
}
