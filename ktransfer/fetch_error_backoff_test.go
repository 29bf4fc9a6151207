package ktransfer_test

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/runtest"
)

// TestLastingFetchErrorIsNotSpun: the brokers answer every fetch with an
// error the Kafka client does not retry by itself (the module's principal
// lost its read permission). The module asks again with a growing wait,
// not as fast as the brokers answer (each answer was one warning line:
// thousands a second), and reads on once the error ends.
func TestLastingFetchErrorIsNotSpun(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 1})
	e.produce(t, "t", [][2]string{{"k", "0"}})
	var refusing atomic.Bool
	refused := e.refuseFetches(kerr.TopicAuthorizationFailed.Code, refusing.Load)
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the first record pushed", 10*time.Second, func() bool { return len(b.got()) == 1 })
	refusing.Store(true)
	waitFor(t, "a fetch refused", 30*time.Second, func() bool { return refused.Load() > 0 })
	from, start := refused.Load(), time.Now()
	time.Sleep(2 * time.Second) // a rate is measured: fetches over two seconds
	n := refused.Load() - from
	t.Logf("%d fetches refused in %v", n, time.Since(start))
	if n > 40 {
		t.Errorf("%d fetches refused in %v: the module asks again at once", n, time.Since(start))
	}
	refusing.Store(false)
	e.produce(t, "t", [][2]string{{"k", "1"}})
	waitFor(t, "the record written after the error ended", 10*time.Second, func() bool { return len(b.got()) == 2 })
}

// countingHandler counts the log records whose message is msg.
type countingHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

// TestLastingFetchErrorBesideTrafficIsNotLoggedPerPoll: one partition's
// fetches fail with an error the Kafka client does not retry, while
// another partition of the module, led by another broker, keeps bringing
// records. The error is logged, but not once per poll (each poll that
// brought the other partition's records also brought the error: a
// warning line per poll, hundreds a second, filling the log's disk).
func TestLastingFetchErrorBesideTrafficIsNotLoggedPerPoll(t *testing.T) {
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	e.refuseFetchesAtBroker0(t, "t", 2)
	var warned atomic.Int64
	log := slog.New(countingHandler{msg: "kafka fetch error", n: &warned})
	b := newBackend(t, nil)
	tr, err := ktransfer.New(e.config(t, 0, module("m", "t", b.URL)), log)
	if err != nil {
		t.Fatal(err)
	}
	runtest.Start(t, tr.Run, 20*time.Second)
	waitFor(t, "the error logged", 10*time.Second, func() bool { return warned.Load() > 0 })
	// Records for partition 1 only, one at a time for two seconds.
	from, start := warned.Load(), time.Now()
	sent := e.produceToFor(t, "t", 1, 2*time.Second)
	n := warned.Load() - from
	t.Logf("%d records written to partition 1, %d warnings in %v", sent, n, time.Since(start))
	if n > 10 {
		t.Errorf("%d warnings of the same fetch error in %v", n, time.Since(start))
	}
	waitFor(t, "partition 1's records pushed", 10*time.Second, func() bool { return len(b.got()) >= sent })
}

// TestLastingFetchErrorDoesNotDelayOtherPartitions: one partition's
// fetches fail with an error the Kafka client does not retry (its leader
// refuses the module's principal), while another partition of the module,
// led by another broker, is healthy and gets a record now and then. The
// healthy partition's records are pushed as soon as they are written: the
// wait that keeps the failing partition from being fetched in a loop is
// that partition's, not the whole module's (a record written during it
// waited up to a second).
func TestLastingFetchErrorDoesNotDelayOtherPartitions(t *testing.T) {
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 2})
	refused := e.refuseFetchesAtBroker0(t, "t", 2)
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "partition 0's fetches refused", 10*time.Second, func() bool { return refused.Load() > 0 })
	cl := kafkatest.Client(t, e.kafka, e.kc, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var worst time.Duration
	for i := range 4 {
		// Partition 1 idle for a while (the failing partition's wait has
		// grown meanwhile), then one record.
		time.Sleep(1800*time.Millisecond + time.Duration(i)*170*time.Millisecond)
		// Written right after a refused fetch: a wait of the whole
		// module's reader would begin now and hold the record up to 1 s.
		from := refused.Load()
		waitFor(t, "a fetch of partition 0 refused", 10*time.Second, func() bool { return refused.Load() > from })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Partition: 1, Value: []byte(strconv.Itoa(i))}).FirstErr()
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		written := time.Now()
		var at time.Time
		waitFor(t, "record "+strconv.Itoa(i)+" pushed", 10*time.Second, func() bool {
			for _, p := range b.got() {
				if p.body == strconv.Itoa(i) {
					at = p.at
					return true
				}
			}
			return false
		})
		d := at.Sub(written)
		t.Logf("record %d pushed %v after it was written", i, d)
		worst = max(worst, d)
	}
	if worst > 600*time.Millisecond {
		t.Errorf("a record of the healthy partition was pushed %v after it was written: it waited for the failing partition's backoff", worst)
	}
}

// produceToFor writes records to partition p of topic, one at a time,
// for d; their values are their numbers from 0. It returns how many.
func (e *env) produceToFor(t *testing.T, topic string, p int32, d time.Duration) int {
	t.Helper()
	cl := kafkatest.Client(t, e.kafka, e.kc, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	sent := 0
	for start := time.Now(); time.Since(start) < d; sent++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte(strconv.Itoa(sent))}).FirstErr()
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	return sent
}
