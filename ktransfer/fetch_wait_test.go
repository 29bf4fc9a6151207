package ktransfer

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// firstPut is a scheduler that only notes when the first record arrives.
type firstPut struct {
	once sync.Once
	got  chan struct{}
}

func (f *firstPut) put(_ context.Context, _ *record) bool {
	f.once.Do(func() { close(f.got) })
	return true
}
func (f *firstPut) work(int, func(*record)) {}
func (f *firstPut) close()                  {}

// twoPartitions is a one-broker cluster whose topic "t" has an empty
// partition 0 and five records in partition 1, and the shared client
// options of a consumer of it.
func twoPartitions(t *testing.T) []kgo.Opt {
	t.Helper()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "t", Partitions: 2}})
	kc := kafkaconf.Default()
	producer := kafkatest.Client(t, k, kc, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := range 5 {
		r := &kgo.Record{Topic: "t", Partition: 1, Value: []byte{byte(i)}}
		if err := producer.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	shared, err := kc.Opts("ktransfer", k.ListenAddrs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return shared
}

// newClient is a kgo client of opts, closed at cleanup.
func newClient(t *testing.T, opts []kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestClaimOnBusyBrokerFetchedAtOnce: a partition claimed while the
// module reads another partition of the same broker, one at its end. The
// broker holds that partition's fetch until data comes or the fetch's
// maximum wait passes, and kgo adds the new partition to the broker's next
// fetch only: its records waited up to that wait (kgo's default, 5 s, here
// to show it) — at every start (claims come one by one) and hand-over. The
// reader must end the fetch in flight.
func TestClaimOnBusyBrokerFetchedAtOnce(t *testing.T) {
	cl := newClient(t, append(consumerOpts(twoPartitions(t)), kgo.FetchMaxWait(5*time.Second)))
	cfg := DefaultModule()
	cfg.Name, cfg.Topic = "m", "t"
	sched := &firstPut{got: make(chan struct{})}
	m := &module{cfg: cfg, t: &Transfer{}, log: slog.New(slog.DiscardHandler), slots: make(chan struct{}, cfg.WindowSize),
		commitKick: make(chan struct{}, 1), sched: sched}
	m.reader = newReader(m, cl)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { m.reader.run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	part := func(id int32) *partition {
		p := newPartition(m, id, ctx)
		p.tracker = newTracker(0)
		p.hwGauge = prometheus.NewGauge(prometheus.GaugeOpts{Name: "hw"})
		return p
	}
	m.reader.assign(part(0), 0) // empty: its fetch waits at the broker
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	m.reader.assign(part(1), 0)
	select {
	case <-sched.got:
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Fatalf("the claimed partition's first record came %v after its claim", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the claimed partition's records never came")
	}
}

// TestPartitionJoiningAFetchWaitsLittle: the same wait where the reader
// cannot end the fetch in flight: kgo adding a partition to a broker's
// fetches by itself (a leader moving to a broker that serves another
// partition at its end). The consumer's maximum wait bounds it.
func TestPartitionJoiningAFetchWaitsLittle(t *testing.T) {
	cl := newClient(t, consumerOpts(twoPartitions(t)))
	got := make(chan time.Time, 1)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			if fs := cl.PollFetches(ctx); fs.NumRecords() > 0 {
				got <- time.Now()
				return
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{"t": {0: kgo.NewOffset().At(0)}})
	time.Sleep(250 * time.Millisecond) // partition 0's fetch waits at the broker
	start := time.Now()
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{"t": {1: kgo.NewOffset().At(0)}})
	select {
	case at := <-got:
		if d := at.Sub(start); d > 1500*time.Millisecond {
			t.Fatalf("the added partition's first record came %v after it was added", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the added partition's records never came")
	}
}
