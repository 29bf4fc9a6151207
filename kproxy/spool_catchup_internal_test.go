package kproxy

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// A topic left in the spool (p.disk) whose pause is over, Kafka taking its
// records again, while its live traffic keeps spooling: fillParked reads
// back [diskFrom, readTo) each round, the round's Read holds new records
// of it, skipped again: it "catches up" only when a round reads none of
// its records. Until then it stays in s.parked and counts in
// kproxy_spool_parked_records, though nothing holds it back.
func TestSpoolDrainDiskTopicCatchesUpUnderTraffic(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 1}, {Name: "b", Partitions: 1}})
	s := testSpooler(t, c, func(cfg *Config) { cfg.SpoolAfterMs = 200 })
	// a was parked and left in the spool from seq 0 on; its pause is over.
	s.parked["a"] = &parkedTopic{topic: "a", retrying: true, disk: true}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			recs := []spool.Record{{Topic: "a", Value: []byte("a" + strconv.Itoa(i))}, {Topic: "b", Value: []byte("b" + strconv.Itoa(i))}}
			if _, err := s.sp.Append(recs); err != nil {
				return
			}
		}
	}()
	s.start()
	defer s.close(context.Background())
	parkedSince := 0
	for range 40 { // 8 s of traffic
		time.Sleep(200 * time.Millisecond)
		s.dmu.Lock()
		_, parked := s.parked["a"]
		s.dmu.Unlock()
		if parked {
			parkedSince++
		}
	}
	close(stop)
	<-done
	t.Logf("a parked in %d of 40 samples over 8 s of traffic; spool records %d", parkedSince, s.sp.Stats().Records)
	if parkedSince > 20 {
		t.Errorf("a, which Kafka takes, stayed parked (kproxy_spool_parked_records) in %d of 40 samples while its traffic went on", parkedSince)
	}
}
