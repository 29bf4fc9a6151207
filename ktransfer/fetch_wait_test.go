package ktransfer

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// putTimes is a scheduler that notes when each partition's records
// arrive, and pushes nothing.
type putTimes struct {
	mu sync.Mutex
	at map[int32][]time.Time
}

func (s *putTimes) put(_ context.Context, r *record) bool {
	s.mu.Lock()
	s.at[r.part.id] = append(s.at[r.part.id], time.Now())
	s.mu.Unlock()
	return true
}
func (s *putTimes) work(int, func(*record)) {}
func (s *putTimes) close()                  {}
func (s *putTimes) drop(*partition)         {}

// of are the times partition id's records arrived.
func (s *putTimes) of(id int32) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.at[id]...)
}

// readerEnv is a module's reader, on the module's consumer options, over
// the one-broker cluster k's topic "t" of two partitions; window slots are
// never given back (the tests dispatch fewer records than the window).
type readerEnv struct {
	k        *kfake.Cluster
	producer *kgo.Client
	m        *module
	sched    *putTimes
	ctx      context.Context
}

func newReaderEnv(t *testing.T) *readerEnv {
	t.Helper()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 2}})
	kc := kafkaconf.Default()
	e := &readerEnv{k: k, producer: kafkatest.Client(t, k, kc, kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.MetadataMaxAge(time.Hour)),
		sched: &putTimes{at: map[int32][]time.Time{}}}
	shared, err := kc.Opts("ktransfer", k.ListenAddrs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(consumerOpts(shared, DefaultModule())...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	cfg := DefaultModule()
	cfg.Name, cfg.Topic, cfg.WindowSize = "m", "t", 100_000
	e.m = &module{cfg: cfg, t: &Transfer{}, log: slog.New(slog.DiscardHandler), slots: make(chan struct{}, cfg.WindowSize),
		commitKick: make(chan struct{}, 1), sched: e.sched}
	e.m.reader = newReader(e.m, cl)
	ctx, cancel := context.WithCancel(context.Background())
	e.ctx = ctx
	var wg sync.WaitGroup
	wg.Go(func() { e.m.reader.run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return e
}

// claim starts reading partition id from offset 0.
func (e *readerEnv) claim(id int32) {
	p := newPartition(e.m, id, e.ctx)
	p.tracker = newTracker(0)
	p.hwGauge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hw"})
	e.m.reader.assign(p, 0)
}

// produce writes n records to partition id.
func (e *readerEnv) produce(t *testing.T, id int32, n int) {
	for i := range n {
		r := &kgo.Record{Topic: "t", Partition: id, Value: []byte{byte(i)}}
		if err := e.producer.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Error(err)
			return
		}
	}
}

// TestClaimOnBusyBrokerFetchedSoon: a partition claimed while the module
// reads another partition of the same broker, one at its end. The broker
// holds that partition's fetch until data comes or the fetch's maximum
// wait passes, and kgo adds the new partition to the broker's next fetch
// only: with kgo's default wait (5 s) the new partition's records waited
// about 5 s — at every start (claims come one by one) and hand-over. Now
// at most fetchMaxWait.
func TestClaimOnBusyBrokerFetchedSoon(t *testing.T) {
	e := newReaderEnv(t)
	e.produce(t, 1, 5)
	fetching := make(chan struct{})
	var once sync.Once
	e.k.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.k.KeepControl()
		for _, ft := range req.(*kmsg.FetchRequest).Topics {
			if len(ft.Partitions) > 0 {
				once.Do(func() { close(fetching) })
			}
		}
		return nil, nil, false
	})
	e.claim(0) // empty: its fetch waits at the broker
	select {
	case <-fetching:
	case <-time.After(10 * time.Second):
		t.Fatal("no fetch of partition 0 in 10 s")
	}
	start := time.Now()
	e.claim(1)
	deadline := time.Now().Add(10 * time.Second)
	for len(e.sched.of(1)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the claimed partition's records never came")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Within fetchMaxWait; kgo's default wait (5 s) is well beyond the
	// slack left for a loaded host.
	if d := e.sched.of(1)[0].Sub(start); d > fetchMaxWait+2500*time.Millisecond {
		t.Fatalf("the claimed partition's first record came %v after its claim", d)
	}
}

// TestClaimDoesNotStallOtherPartitions: a claim while the brokers'
// Metadata answers are slow (a broker in a long GC pause, a busy
// controller). The claimed partition waits for the metadata; the
// partitions already read must not (a build that removed and re-added
// every partition read at each claim, to end the fetch in flight, left
// them without a cursor until the metadata came: 3 s without a record).
func TestClaimDoesNotStallOtherPartitions(t *testing.T) {
	e := newReaderEnv(t)
	e.claim(0)
	stop := make(chan struct{})
	var producing sync.WaitGroup
	producing.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			e.produce(t, 0, 1)
		}
	})
	t.Cleanup(func() { close(stop); producing.Wait() })
	pollUntil(t, "partition 0 read", 10*time.Second, func() bool { return len(e.sched.of(0)) > 0 })
	// Metadata held 5 s: partitions left without a cursor until it comes
	// get nothing for 5 s, well beyond the 2.5 s a loaded host may stall.
	e.k.ControlKey(int16(kmsg.Metadata), func(kmsg.Request) (kmsg.Response, error, bool) {
		e.k.KeepControl()
		e.k.SleepControl(func() { time.Sleep(5 * time.Second) })
		return nil, nil, false
	})
	from := time.Now()
	e.claim(1)
	time.Sleep(6 * time.Second) // the whole of the slow Metadata answer, observed
	to := time.Now()
	prev, gap := from, time.Duration(0)
	for _, at := range e.sched.of(0) {
		if at.After(from) && at.Before(to) {
			gap, prev = max(gap, at.Sub(prev)), at
		}
	}
	if gap = max(gap, to.Sub(prev)); gap > 2500*time.Millisecond {
		t.Fatalf("partition 0 got no record for %v after partition 1 was claimed while Metadata was slow", gap)
	}
}
