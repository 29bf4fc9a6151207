package kproxy_test

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// A record's produce request reaches the broker, which sits on it past
// produce_timeout_ms and then drops the connection without writing it:
// kgo cannot know whether the record was written. At acks=1 kgo gives the
// record up at its deadline and never sends it again. At acks=-1 it may
// not give up a request that is out (the partition's sequence numbers
// would go wrong), so it sends the record again after its deadline, and
// the broker writes it then, once; the client was answered 504 "may have
// been written" at the deadline. README says so (produce_timeout_ms,
// Delivery guarantees), not "never sent after it".
func TestUnsureRecordResentPastDeadlineOnlyAtAcksAll(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	arrivals := watchProduce(c)
	// Not shorter: the warm-up and the record after the unsure one must be
	// answered within it on a loaded machine (at 300 ms the record after
	// it was once answered 504 while other tests ran).
	const timeout = time.Second
	p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = int(timeout / time.Millisecond) })
	for _, acks := range []string{"1", "-1"} {
		decode(t, p.post(t, "topic="+topic+"&key=k&acks="+acks, unique(t, "warm-up-"+acks))) // connection, producer ID
		value := "unsure-" + acks
		var held atomic.Bool
		c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			if held.Load() || !strings.Contains(string(req.(*kmsg.ProduceRequest).Topics[0].Partitions[0].Records), value) {
				return nil, nil, false
			}
			// Kept (inert from now on), not dropped: kfake drops a control
			// that slept without its lock, a data race with the next
			// round's ControlKey.
			held.Store(true)
			c.SleepControl(func() { time.Sleep(timeout + 500*time.Millisecond) }) // past the answer (timeout + 250 ms)
			return nil, errors.New("connection dropped, nothing written"), true
		})
		posted := time.Now()
		a := p.post(t, "topic="+topic+"&key=k&acks="+acks, unique(t, value))
		if a.code != 504 || !strings.Contains(a.body, "may have been written") {
			t.Fatalf("acks=%s: %d %q, want 504 \"may have been written\"", acks, a.code, a.body)
		}
		// The next record of the key comes after it (acks=-1: in order).
		decode(t, p.post(t, "topic="+topic+"&key=k&acks="+acks, unique(t, "after-"+acks)))
		n := inKafka(t, c)[string(unique(t, value))]
		var late int
		arrivals.mu.Lock()
		for _, r := range arrivals.reqs {
			for _, b := range r.batches {
				if strings.Contains(string(b), value) && r.at.Sub(posted) > timeout {
					late++
				}
			}
		}
		arrivals.mu.Unlock()
		t.Logf("acks=%s: sent %d times past its deadline, in Kafka %d times", acks, late, n)
		switch acks {
		case "1":
			if late != 0 || n != 0 {
				t.Errorf("acks=1: sent %d times past the deadline, in Kafka %d times; want never sent again, not written", late, n)
			}
		case "-1":
			if late == 0 || n != 1 {
				t.Errorf("acks=-1: sent %d times past the deadline, in Kafka %d times; want sent again past it and written once", late, n)
			}
		}
	}
}
