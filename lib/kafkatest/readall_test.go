package kafkatest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
)

// A broker stalled for a while (a loaded machine) answers the read's fetch
// late, 7 s after the read started: ReadAll waits for the records the end
// offsets promise, rather than return without them after a quiet second.
func TestReadAllWaitsForAFetchAnsweredLate(t *testing.T) {
	c := Start(t, []Topic{{"t", 1}})
	kc := kafkaconf.Default()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := Client(t, c, kc, kgo.DefaultProduceTopic("t"))
	if err := cl.ProduceSync(ctx, kgo.StringRecord("a"), kgo.StringRecord("b"), kgo.StringRecord("c")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	answer := time.Now().Add(7 * time.Second)
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		if time.Now().Before(answer) {
			c.KeepControl()
			c.SleepControl(func() { time.Sleep(time.Until(answer)) })
		}
		return nil, nil, false
	})
	if recs := ReadAll(t, c, kc, "t"); len(recs) != 3 {
		t.Fatalf("read %d records, want the 3 in the log", len(recs))
	}
}

// A transaction left open holds records the read cannot return
// (read_committed): ReadAll returns those before it, and does not wait
// for the open ones.
func TestReadAllStopsBeforeAnOpenTransaction(t *testing.T) {
	c := Start(t, []Topic{{"t", 1}})
	kc := kafkaconf.Default()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	plain := Client(t, c, kc, kgo.DefaultProduceTopic("t"))
	if err := plain.ProduceSync(ctx, kgo.StringRecord("a"), kgo.StringRecord("b")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	txn := Client(t, c, kc, kgo.DefaultProduceTopic("t"), kgo.TransactionalID("open"))
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, kgo.StringRecord("open")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	recs := ReadAll(t, c, kc, "t")
	if len(recs) != 2 || string(recs[0].Value) != "a" || string(recs[1].Value) != "b" {
		t.Fatalf("read %d records, want a and b", len(recs))
	}
	t.Logf("read in %v", time.Since(start))
}
