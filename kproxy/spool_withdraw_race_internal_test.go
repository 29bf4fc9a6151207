package kproxy

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolDrainWithdrawWhilePlacing: the topic's metadata comes about
// when the drain's 2 s wait for placement ends, so the old client places
// the records while withdrawLate takes the chunk back (kgo's bufferRecord
// writes a record's Timestamp and Partition). withdrawLate copied the new
// records from the old ones: a data race under -race (CI runs it so),
// and a torn timestamp without; they are built from the spool's entries
// now. The delay is swept around the 2 s so that one lands in the gap;
// the records then drain, in order, each once.
func TestSpoolDrainWithdrawWhilePlacing(t *testing.T) {
	for d := 1965 * time.Millisecond; d <= 2025*time.Millisecond; d += 15 * time.Millisecond {
		t.Run(fmt.Sprint(d), func(t *testing.T) {
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}})
			var on atomic.Bool
			on.Store(true)
			slowMetadata(c, "a", d, &on)
			s := testSpooler(t, c, nil)
			const recs = 10000
			appendKeySeq(t, s, "a", recs)
			s.start()
			time.Sleep(2600 * time.Millisecond)
			on.Store(false)
			waitSpoolDrained(t, s)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.close(ctx); err != nil {
				t.Error(err)
			}
			inOrderOnce(t, c, recs, nil)
		})
	}
}
