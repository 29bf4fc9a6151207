package kproxy

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// checkParkedLocked checks the parked accounting and ordering invariants (s.dmu held).
func checkParkedLocked(s *spooler) string {
	total := 0
	for name, p := range s.parked {
		if p.topic != name {
			return "topic name mismatch " + name
		}
		b := 0
		for i, e := range p.entries {
			b += parkedCost(e)
			if i > 0 && p.entries[i-1].Seq >= e.Seq {
				return fmt.Sprintf("%s: entries out of order at %d", name, i)
			}
			if p.disk && e.Seq >= p.diskFrom {
				return fmt.Sprintf("%s: entry seq %d >= diskFrom %d", name, e.Seq, p.diskFrom)
			}
			if e.Topic != name {
				return fmt.Sprintf("%s: entry of topic %s", name, e.Topic)
			}
		}
		if b != p.bytes {
			return fmt.Sprintf("%s: p.bytes %d, entries hold %d", name, p.bytes, b)
		}
		if p.bytes < 0 {
			return fmt.Sprintf("%s: negative bytes %d", name, p.bytes)
		}
		total += b
	}
	if total != s.parkedBytes {
		return fmt.Sprintf("parkedBytes %d, topics hold %d", s.parkedBytes, total)
	}
	return ""
}

// TestSpoolDrainParkedInvariantsRandom: topics Kafka refuses at random
// (from a printed seed) while records are spooled: the parked accounting
// (parkedCost, per topic and in all) and order hold throughout, and every
// record reaches Kafka once, in key order.
func TestSpoolDrainParkedInvariantsRandom(t *testing.T) {
	const nTopics, keys, recBytes = 4, 4, 1024
	var topics []kafkatest.Topic
	for i := 0; i < nTopics; i++ {
		topics = append(topics, kafkatest.Topic{Name: "t" + strconv.Itoa(i), Partitions: 2})
	}
	c := kafkatest.Start(t, topics)
	var refusing atomic.Bool
	refusing.Store(true)
	var mu sync.Mutex
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewSource(seed))
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		mu.Lock()
		deny := refusing.Load() && rnd.Intn(10) < 6
		mu.Unlock()
		if !deny {
			return nil, nil, false
		}
		return deniedProduce(req.(*kmsg.ProduceRequest)), nil, true
	})
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolAfterMs = 200 })
	s.parkBudget = 128 << 10
	pad := strings.Repeat("v", recBytes)
	arnd := rand.New(rand.NewSource(seed + 1)) // the records' topics: the seed gives them too
	next := make([]int, nTopics)
	total := 0
	appendSome := func(n int) {
		rs := make([]spool.Record, n)
		for i := range rs {
			ti := arnd.Intn(nTopics)
			topic := "t" + strconv.Itoa(ti)
			key := topic + "k" + strconv.Itoa(next[ti]%keys)
			rs[i] = spool.Record{Topic: topic, Key: []byte(key), Value: []byte(fmt.Sprintf("%s#%06d#%s", key, next[ti], pad))}
			next[ti]++
		}
		if _, err := s.sp.Append(rs); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	appendSome(500)
	s.start()
	defer s.close(context.Background())
	var bad atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	peak := 0
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.dmu.Lock()
			if msg := checkParkedLocked(s); msg != "" && bad.Load() == nil {
				bad.Store(msg)
			}
			peak = max(peak, s.parkedBytes)
			s.dmu.Unlock()
			time.Sleep(200 * time.Microsecond)
		}
	}()
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		appendSome(40)
	}
	refusing.Store(false)
	waitSpoolDrained(t, s)
	close(stop)
	<-done
	if msg := bad.Load(); msg != nil {
		t.Fatalf("invariant broken: %v", msg)
	}
	t.Logf("%d records, parked peak %d bytes (budget %d)", total, peak, s.parkBudget)
	if peak > s.parkBudget+nTopics*(recBytes+20+parkedEntryOverhead) {
		t.Errorf("parked peak %d past budget + a record per topic", peak)
	}
	for i := 0; i < nTopics; i++ {
		topic := "t" + strconv.Itoa(i)
		got := kafkatest.ReadAll(t, c, kafkaconf.Default(), topic)
		if len(got) != next[i] {
			t.Errorf("%s: %d records in Kafka, want %d", topic, len(got), next[i])
		}
		type seen struct {
			n         int
			partition int32
			offset    int64
		}
		last := map[string]seen{}
		for _, rec := range got {
			key, rest, _ := strings.Cut(string(rec.Value), "#")
			n, _ := strconv.Atoi(rest[:6])
			if prev, ok := last[key]; ok && n <= prev.n {
				t.Fatalf("%s key %s: %d (partition %d, offset %d) after %d (partition %d, offset %d)",
					topic, key, n, rec.Partition, rec.Offset, prev.n, prev.partition, prev.offset)
			}
			last[key] = seen{n, rec.Partition, rec.Offset}
		}
	}
}
