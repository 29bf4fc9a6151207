package kproxy

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestSpoolAppendTakesWhatFits: 40 records of 30 KB of 40 requests are
// queued for the spool together (one appender's group), in a spool of
// 1 MiB with room for about 34 of them: the spool takes as many as fit and
// refuses the rest as full, rather than refuse all 40 as one all-or-nothing
// append (answered 503 "the spool is full" while it was empty).
func TestSpoolAppendTakesWhatFits(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	// Kafka away: the drain frees no room while the group is appended
	// (with room freed between the halves, a later half may fit after an
	// earlier one did not).
	end := kafkatest.NewFaults(t, c).Outage(kerr.NotLeaderForPartition.Code)
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolMaxBytes = 1 << 20 })
	g := s.gate("t")
	items := make([]*spoolItem, 40)
	value := strings.Repeat("x", 30_000)
	for i := range items {
		items[i] = newSpoolItem(g, &kgo.Record{Topic: "t", Key: []byte("k" + strconv.Itoa(i)), Value: []byte(value)}, false, time.Time{})
	}
	g.mu.Lock()
	g.queued += len(items)
	g.mu.Unlock()
	s.push(items...) // queued before the appender runs: one group
	s.start()
	defer func() {
		end() // the drain's close flushes what it holds
		s.close(context.Background())
	}()
	taken, full := 0, 0
	for i, it := range items {
		<-it.done
		switch {
		case it.err == nil:
			if full > 0 {
				t.Errorf("record %d taken after one refused as full", i)
			}
			taken++
		case errors.Is(it.err, spool.ErrFull):
			full++
		default:
			t.Fatalf("record %d: %v", i, it.err)
		}
	}
	if taken < 30 || taken > 35 {
		t.Fatalf("%d of 40 records of 30 KB taken by an empty spool of 1 MiB, %d refused as full: want about 34 taken", taken, full)
	}
}
