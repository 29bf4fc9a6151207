package kproxy_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolRefusedFlipOfBatchesAnswered504 attacks the hand-over of
// /batch records to the spool (run it with -race): Kafka is frozen; two
// batches of one topic (1.8 MB together) are in kgo when the first one's
// spool_after_ms passes and its handler has the topic's flip take every
// record of both into the spool. The spool (1 MiB) refuses them as full,
// and the appender links each in its gate again (kgo may still write it)
// before the second batch's spool_after_ms passes: that handler then goes
// over its records, taken and linked again, and must not read what the
// appender wrote (a data race). Every record is answered 504 (refused by
// the spool, may be written).
func TestSpoolRefusedFlipOfBatchesAnswered504(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	p := spoolProxy(t, c, func(cfg *kproxy.Config) {
		cfg.SpoolMaxBytes = 1 << 20
		cfg.SpoolAfterMs = 2500
		cfg.ProduceTimeoutMs = 6000
	})
	warmUp(t, p, "acks=-1&topic="+topic+"&key=w", mp(t, "warm"))
	thaw := freezeProduce(t, c)
	defer thaw()
	var wg sync.WaitGroup
	for b := range 2 {
		recs := make([]map[string]any, 600)
		for i := range recs {
			recs[i] = map[string]any{"key": strconv.Itoa(i % 50), "value": strings.Repeat("v", 1500)}
		}
		wg.Go(func() {
			code, a := postBatch(t, p, "acks=-1&topic="+topic, recs)
			if len(a.Results) != len(recs) {
				t.Errorf("batch %d: %d, %d results, want %d", b, code, len(a.Results), len(recs))
				return
			}
			for i, r := range a.Results {
				if r.Status != 504 || r.Spooled {
					t.Errorf("batch %d record %d: %d (spooled %v), want 504: its copy refused by the full spool, it may be written",
						b, i, r.Status, r.Spooled)
					return
				}
			}
		})
		time.Sleep(300 * time.Millisecond) // in kgo at the first one's flip; its own spool_after_ms ends once the spool refused the flip
		// Both in kgo well before the first one's spool_after_ms: a loaded
		// machine once took so long over the second that the first one's
		// flip took it alone, and the spool had room for it (202).
		waitFor(t, "the batch in kgo", func() bool { return kproxy.ClientRecords(p.srv) >= int64(len(recs)*(b+1)) })
	}
	wg.Wait()
}
