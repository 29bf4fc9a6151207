package kproxy

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// A purge of a topic whose id went stale (topicPurges) waits for the
// Kafka client's metadata loop, which waits while a broker sits on a
// metadata request. Closing the Kafka side must not wait for that purge
// before it closes the clients (closing the client ends the purge's wait):
// closeKafka returns within its context, not when the broker answers.
func TestCloseKafkaDoesNotWaitForAPurge(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	cfg := DefaultConfig()
	cfg.Port, cfg.ListenHost, cfg.AdminAddr = 0, "127.0.0.1", "" // not the default ports: another test process may hold them
	cfg.BrokerHosts = c.ListenAddrs()
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := s.prod.client(1)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "t", Value: []byte("warm")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	held := make(chan struct{}, 1)
	c.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case held <- struct{}{}:
		default:
		}
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	cl.ForceMetadataRefresh()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("no metadata request came")
	}
	s.purges.start(cl, "t") // waits behind the held metadata request
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	closed := make(chan struct{})
	go func() { _ = s.closeKafka(ctx); close(closed) }()
	select {
	case <-closed:
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("closeKafka took %v with a 500 ms context", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("closeKafka not returned 10 s after it began: it waits for the purge behind the held metadata request")
	}
}

// A purge's bookkeeping names its client. Transactional clients are
// retired and replaced (txnPool.retire), and a retired one must not stay
// reachable from it: once a purge's hold-off has passed its entry goes,
// or every retired client that ever purged a topic, with its buffers,
// would be kept for the life of the process.
func TestPurgesForgetEndedPurges(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}, {Name: "u", Partitions: 1}})
	tp := &topicPurges{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	retired, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	tp.start(retired, "t")
	tp.wg.Wait()
	retired.Close()
	time.Sleep(purgeHoldOff + 50*time.Millisecond) // the hold-off is the rule under test
	live, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	tp.start(live, "u")
	tp.wg.Wait()
	// The entry goes when its hold-off's timer fires, late on a loaded
	// machine.
	kept := func() (n int) {
		tp.mu.Lock()
		defer tp.mu.Unlock()
		for k := range tp.last {
			if k.cl == retired {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); kept() > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if n := kept(); n > 0 {
		t.Errorf("%d purges by a retired client, ended more than %v ago, are still kept", n, purgeHoldOff)
	}
}

// The last purges before a quiet spell must be forgotten too: kproxy may
// purge no topic for days after it, and the retired client a purge names
// must not be kept for that long.
func TestPurgeForgottenWithoutAnotherPurge(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 1}})
	tp := &topicPurges{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	retired, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	tp.start(retired, "t")
	tp.wg.Wait()
	retired.Close()
	time.Sleep(purgeHoldOff) // the hold-off is the rule under test
	// Forgotten soon after it (a timer; a loaded machine runs it late):
	// polled for up to 10 s, not days.
	n := 0
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		tp.mu.Lock()
		n = len(tp.last)
		tp.mu.Unlock()
		if n == 0 || time.Now().After(deadline) {
			break
		}
	}
	if n != 0 {
		t.Errorf("%d purge entries kept 10 s after the last purge's hold-off, with no purge since; want none", n)
	}
}
