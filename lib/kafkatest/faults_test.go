package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
)

// The faults do what they say, seen from a plain idempotent kgo producer:
// each is injected, the producer recovers, and the log holds each record
// once (AppendThen writes the first attempt; the retry is deduplicated).
func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(f *Faults)
	}{
		{"close connection", func(f *Faults) { f.CloseConn(int16(kmsg.Produce), 2) }},
		{"not leader", func(f *Faults) { f.ErrorProduce(2, 6) }},
		{"not leader every 2nd request", func(f *Faults) { f.ErrorProduceEvery(2, 2, 6) }},
		{"sleep", func(f *Faults) { f.Sleep(int16(kmsg.Produce), 1, 300*time.Millisecond) }},
		{"append then timed out", func(f *Faults) { f.AppendThen(1, 7) }},
		{"append then connection closed", func(f *Faults) { f.AppendThen(1, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := StartBrokers(t, 3, []Topic{{"t", 3}})
			kc := kafkaconf.Default()
			cl := Client(t, c, kc, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic("t"))
			if err := cl.ProduceSync(context.Background(), kgo.StringRecord("warm-up")).FirstErr(); err != nil {
				t.Fatal(err)
			}
			f := NewFaults(t, c)
			tc.inject(f)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for i := range 5 {
				r := &kgo.Record{Key: []byte("k"), Value: []byte{byte(i)}}
				if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
			}
			if f.Injected() == 0 {
				t.Fatal("the fault was never injected")
			}
			if n := Records(t, c, kc, "t"); n != 6 {
				t.Errorf("%d records in the log, want 6", n)
			}
			recs := ReadAll(t, c, kc, "t")
			if len(recs) != 6 {
				t.Errorf("read %d records, want 6", len(recs))
			}
		})
	}
}

func TestShuffleEvery(t *testing.T) {
	c := StartBrokers(t, 3, []Topic{{"t", 6}})
	stop := NewFaults(t, c).ShuffleEvery(20 * time.Millisecond)
	deadline := time.Now().Add(15 * time.Second)
	seen := map[int32]bool{}
	for len(seen) < 3 && time.Now().Before(deadline) {
		seen[c.LeaderFor("t", 0)] = true
		time.Sleep(10 * time.Millisecond)
	}
	if n := stop(); n == 0 || len(seen) < 2 {
		t.Errorf("%d shuffles, leaders seen %v", n, seen)
	}
}
