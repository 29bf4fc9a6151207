package kproxy

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSpoolDrainNewClientRefusedHeadKeepsKeyOrder: the drain client's
// first chunk of a topic it has not produced to (every start with a
// spool to drain, and after setAside or refreshParked): kgo holds the
// records until the topic's metadata loads (delayed here), then places
// them in their partition one by one. Kafka refuses the first produce
// request. The drain flushed as soon as the chunk was handed over, so a
// request left with the partition's first records while the rest were
// still being placed, and the records placed after kgo failed that batch
// went out in a new batch (sequence 0 again), which Kafka took: ahead of
// the refused ones, retried after the pause (a CI run of
// TestSpoolDrainParkedInvariantsRandom found "0 after 32" so; this fails
// reliably under the race detector on the old drain). The flush now waits
// until every record of the chunk is placed.
func TestSpoolDrainNewClientRefusedHeadKeepsKeyOrder(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
	var mu sync.Mutex
	var reqs []string
	var n atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		pr := req.(*kmsg.ProduceRequest)
		i := n.Add(1)
		desc := ""
		for _, rt := range pr.Topics {
			for _, rp := range rt.Partitions {
				var b kmsg.RecordBatch
				if err := b.ReadFrom(rp.Records); err == nil {
					desc += fmt.Sprintf(" partition %d: sequence %d, %d records", rp.Partition, b.FirstSequence, b.NumRecords)
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if i == 1 {
			reqs = append(reqs, fmt.Sprintf("produce request %d refused:%s", i, desc))
			return deniedProduce(pr), nil, true
		}
		reqs = append(reqs, fmt.Sprintf("produce request %d taken:%s", i, desc))
		return nil, nil, false
	})
	// The topic's metadata comes after the drain handed the chunk over.
	c.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		for _, rt := range req.(*kmsg.MetadataRequest).Topics {
			if rt.Topic != nil && *rt.Topic == "a" {
				c.SleepControl(func() { time.Sleep(50 * time.Millisecond) })
				break
			}
		}
		return nil, nil, false
	})
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolAfterMs = 200 })
	const recs = 10000
	rs := make([]spool.Record, recs)
	for i := range rs {
		rs[i] = spool.Record{Topic: "a", Key: []byte("k"), Value: []byte(fmt.Sprintf("%06d", i))}
	}
	if _, err := s.sp.Append(rs); err != nil {
		t.Fatal(err)
	}
	s.start()
	defer s.close(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	for s.sp.Stats().Records != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not drained: %d left", s.sp.Stats().Records)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := kafkatest.ReadAll(t, c, kafkaconf.Default(), "a")
	if len(got) != recs {
		t.Errorf("%d records in Kafka, want %d", len(got), recs)
	}
	prev := -1
	for _, r := range got {
		v, _ := strconv.Atoi(string(r.Value))
		if v <= prev {
			mu.Lock()
			for _, r := range reqs {
				t.Log(r)
			}
			mu.Unlock()
			t.Fatalf("record %d at offset %d, after record %d", v, r.Offset, prev)
		}
		prev = v
	}
}
