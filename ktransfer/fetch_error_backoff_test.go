package ktransfer_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
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
	var refused atomic.Int64
	e.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.kafka.KeepControl()
		if !refusing.Load() {
			return nil, nil, false
		}
		refused.Add(1)
		return kafkatest.FetchError(req.(*kmsg.FetchRequest), kerr.TopicAuthorizationFailed.Code), nil, true
	})
	b := newBackend(t, nil)
	e.start(t, module("m", "t", b.URL))
	waitFor(t, "the first record pushed", 10*time.Second, func() bool { return len(b.got()) == 1 })
	refusing.Store(true)
	waitFor(t, "a fetch refused", 5*time.Second, func() bool { return refused.Load() > 0 })
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
