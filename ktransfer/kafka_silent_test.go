package ktransfer_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestHandOverWhileKafkaSilent: the brokers take metadata requests and
// never answer them (a network partition that drops packets, a hung
// broker); a stopping instance's partitions must still be taken by the
// other at once, from the partition list read last. (Before, every
// reassignment first waited for the brokers' partition list, 15 s, before
// falling back to the list read last: the partitions were pushed by nobody
// meanwhile.)
func TestHandOverWhileKafkaSilent(t *testing.T) {
	e := newEnv(t, kafkatest.Topic{Name: "t", Partitions: 4})
	b := newBackend(t, nil)
	m := module("m", "t", b.URL)
	e.start(t, m)
	second := e.start(t, m)
	waitFor(t, "2 + 2", 10*time.Second, func() bool {
		return halves(e.owners(t, "m", "t"), 4)
	})
	silence := make(chan struct{})
	t.Cleanup(func() { close(silence) })
	var held atomic.Int64
	e.kafka.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		held.Add(1)
		e.kafka.SleepControl(func() { <-silence })
		return nil, nil, false
	})
	stopped := time.Now()
	if err := second.stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first instance to own all 4 while Kafka is silent", 10*time.Second, func() bool {
		o := e.owners(t, "m", "t")
		return len(distinctOwners(o)) == 1 && len(o) == 4
	})
	took := time.Since(stopped)
	t.Logf("hand-over with Kafka silent: %v", took)
	// The brokers were silent: a metadata request was held (the Kafka
	// client asks at its own pace; the hand-over may come first, 128 ms
	// once in a CI run).
	waitFor(t, "a metadata request held (the brokers silent)", 20*time.Second, func() bool { return held.Load() > 0 })
	// At once: 2 s as when Kafka answers, 4 s more for a loaded host,
	// well under the 15 s the brokers' partition list was waited for.
	if took > 6*time.Second {
		t.Errorf("the partitions were taken %v after the other instance stopped; want at once (2 s as when Kafka answers)", took)
	}
}
