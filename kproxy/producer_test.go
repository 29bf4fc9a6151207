package kproxy

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// fnv1aPartition must place keys as sarama's default hash partitioner did
// (FNV-1a 32, int32 modulo, absolute value), which is how the 2015 suite
// routed. (murmur2 is checked against the Java client over HTTP.)
func TestFnv1aPartition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		key := make([]byte, 1+rng.IntN(40))
		for j := range key {
			key[j] = byte(rng.IntN(256))
		}
		n := int32(1 + rng.IntN(64))
		h := fnv.New32a()
		h.Write(key)
		want := int32(h.Sum32()) % n
		if want < 0 {
			want = -want
		}
		if got := fnv1aPartition(key, n); got != want {
			t.Fatalf("key % x n=%d: %d, want %d", key, n, got, want)
		}
	}
}

func TestProduceStatus(t *testing.T) {
	never, answered, lost := sendTrace{}, sendTrace{wrote: true}, sendTrace{wrote: true, lost: true}
	out := sendTrace{wrote: true, out: true} // its request still out (or its end not counted yet)
	for _, tc := range []struct {
		err   error
		trace sendTrace
		want  int
	}{
		{kerr.InvalidRecord, lost, 504}, // an answer lost before the refusal
		{context.DeadlineExceeded, lost, 504},
		{context.DeadlineExceeded, answered, 503}, // every attempt refused
		{context.DeadlineExceeded, out, 504},      // failed while its request was out
		{kgo.ErrRecordTimeout, out, 504},
		{context.DeadlineExceeded, never, 503},
		{kgo.ErrRecordTimeout, answered, 503},
		{kgo.ErrClientClosed, never, 503},
		// A broker's refusal of a batch for a record it will not take:
		// kgo fails the partition's other records with it (the batch's,
		// those queued behind, those of a later batch out at acks=-1),
		// none written; the refusal may be another record's.
		{kerr.InvalidRecord, answered, 503},
		{kerr.InvalidRecord, never, 503},
		{kerr.InvalidRecord, out, 503},
		{kerr.CorruptMessage, out, 503},
		{kerr.InvalidTimestamp, answered, 503},
		{kerr.InvalidRecord, sendTrace{wrote: true, idempotent: true}, 503},
		// At acks=-1 a leader may refuse a batch it appended
		// (NOT_LEADER_OR_FOLLOWER as it loses the leadership): once the
		// client wrote a request, a record kgo gives up on after such
		// refusals may be in Kafka (TestAcksAllAfterNotLeaderAppendNot503).
		{context.DeadlineExceeded, sendTrace{wrote: true, idempotent: true}, 504},
		{kerr.LeaderNotAvailable, sendTrace{wrote: true, idempotent: true}, 504},
		{kerr.NotLeaderForPartition, sendTrace{wrote: true, idempotent: true}, 504},
		{kgo.ErrClientClosed, sendTrace{wrote: true, idempotent: true}, 504},
		{context.DeadlineExceeded, sendTrace{idempotent: true}, 503}, // never left
		{kerr.LeaderNotAvailable, sendTrace{idempotent: true}, 503},
		{kerr.LeaderNotAvailable, answered, 503}, // acks=1: the leader answered at its append
		// At acks=-1 a second request since the record was handed over
		// may have been the retry of a batch appended and answered
		// NOT_ENOUGH_REPLICAS_AFTER_APPEND, which the broker validates
		// before its sequence numbers (TestInvalidRefusalOfRetryAfterUnsureAppendNot503).
		{kerr.InvalidTimestamp, sendTrace{wrote: true, rewrote: true, idempotent: true}, 504},
		{kerr.InvalidRecord, sendTrace{wrote: true, rewrote: true}, 503}, // acks=1: brokers send neither answer
		// A refusal as too large comes only in the answer to the record's
		// own request: definite, whatever other requests are out (a
		// batch's records go to several brokers at once).
		{kerr.MessageTooLarge, out, 413},
		// Errors a metadata answer can bring too fail records whose
		// request is out (TestMetadataErrorWhileRequestOutIs504).
		{kerr.UnknownServerError, out, 504},
		{kerr.TopicAuthorizationFailed, out, 504},
		{fmt.Errorf("%w (uncompressed_bytes=10)", kerr.MessageTooLarge), answered, 413},
		{kerr.MessageTooLarge, never, 413},
		{kerr.TopicAuthorizationFailed, answered, 403},
		{kerr.UnknownTopicOrPartition, never, 404},
		{kerr.NotLeaderForPartition, answered, 503},
		{kerr.UnknownServerError, answered, 502},
		{errors.New("something new"), answered, 504},
		{errors.New("dial tcp: connection refused"), never, 503},
	} {
		code, reason := produceStatus(tc.err, tc.trace)
		if code != tc.want {
			t.Errorf("%v %+v: %d %q, want %d", tc.err, tc.trace, code, reason, tc.want)
		}
	}
}

type nopObserver struct{}

func (nopObserver) Observe(float64) {}

// testProducers are kproxy's clients for cfg, closed at cleanup.
func testProducers(t *testing.T, cfg Config, log *slog.Logger) *producers {
	t.Helper()
	ps, err := newProducers(context.Background(), cfg, log, producerHooks{batchRecords: nopObserver{},
		batchMaxBytes: func(string) int32 { return int32(cfg.MaxMessageBytes) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.close(context.Background()) })
	return ps
}

// testSpooler opens a spooler on c with a fresh spool directory, its
// producers closed at cleanup; edit, if not nil, changes the config
// first. The caller closes the spooler.
func testSpooler(t *testing.T, c *kfake.Cluster, edit func(*Config)) *spooler {
	t.Helper()
	cfg := DefaultConfig()
	cfg.BrokerHosts = c.ListenAddrs()
	cfg.SpoolDir = t.TempDir()
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := openSpooler(context.Background(), cfg, log, testProducers(t, cfg, log), nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLeaderClientResendsAbandonedRequest shows how the acks=1 client
// (acks=0 and acks=1 records, acks=0 ones on a client of their own with
// the spool; not idempotent) writes a record twice with
// no fault of the broker or the network: kgo makes the context of the
// first cancellable record in a produce request the request's context,
// and when it ends while the request is out (kproxy cancels a record at
// its deadline, or its generation when its topic starts spooling) kgo
// stops waiting for the answer, closes the connection and sends the
// request's other batches again. The broker had the request already and
// writes it: those batches are in Kafka twice, one copy right after the
// other. Here the broker is frozen while the request is out, as in
// TestSpoolFrozenBrokerSpoolsInFlight (where acks=0 records were seen
// twice); the batch that is resent has no cancellable context, so that
// the cancelled record heads the request whatever order kgo takes the
// partitions in (in kproxy every record has one, and the first batch's
// decides).
func TestLeaderClientResendsAbandonedRequest(t *testing.T) {
	const topic = "T"
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 2}})
	cfg := DefaultConfig()
	cfg.BrokerHosts = c.ListenAddrs()
	cfg.LingerMs = 300 // the two records below go out in one request
	ps := testProducers(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	cl, tr := ps.client(1)

	// A key for each partition, as the client places keys.
	part := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	keys := map[int]string{}
	for i := 0; len(keys) < 2; i++ {
		k := "k" + strconv.Itoa(i)
		keys[part.Partition(&kgo.Record{Key: []byte(k)}, 2)] = k
	}
	ctx := context.Background()
	for p, k := range keys { // metadata and connection in place
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(k), Value: []byte("warm")}).FirstErr(); err != nil {
			t.Fatalf("partition %d: %v", p, err)
		}
	}

	// The broker freezes at the next produce request, and later ones
	// (metadata too) wait behind it; the frozen one is then handled
	// as usual.
	var produces atomic.Int32
	held, thawed := make(chan struct{}), make(chan struct{})
	thaw := sync.OnceFunc(func() { close(thawed) })
	t.Cleanup(thaw)
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if produces.Add(1) == 1 {
			close(held)
			<-thawed
		}
		return nil, nil, false
	})

	lost := tr.lost.Load()
	gen, cancel := context.WithCancel(ctx) // the generation of a gated acks=1 record
	defer cancel()
	errA, resB := make(chan error, 1), make(chan *kgo.Record, 1)
	cl.Produce(gen, &kgo.Record{Topic: topic, Key: []byte(keys[0]), Value: []byte("A")},
		func(_ *kgo.Record, err error) { errA <- err })
	cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(keys[1]), Value: []byte("B")},
		func(r *kgo.Record, err error) {
			if err != nil {
				t.Errorf("B: %v", err)
			}
			resB <- r
		})
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not within 10 s", what)
		}
	}
	wait("the request of A and B at the broker", held)

	cancel() // A's topic starts spooling
	doneA := make(chan struct{})
	go func() {
		if err := <-errA; !errors.Is(err, context.Canceled) {
			t.Errorf("A: %v, want context.Canceled", err)
		}
		close(doneA)
	}()
	wait("A failed", doneA)
	if n := tr.lost.Load() - lost; n != 1 {
		t.Errorf("%d produce requests ended without an answer, want 1 (the request of A and B, abandoned)", n)
	}
	thaw()
	var b *kgo.Record
	select {
	case b = <-resB:
	case <-time.After(10 * time.Second):
		t.Fatal("B: no answer within 10 s of the thaw")
	}

	var copiesA, copiesB []int64
	for _, r := range kafkatest.ReadAll(t, c, cfg.Kafka, topic) {
		switch string(r.Value) {
		case "A":
			copiesA = append(copiesA, r.Offset)
		case "B":
			copiesB = append(copiesB, r.Offset)
		}
	}
	t.Logf("A (failed: context canceled) at offsets %v; B (answered at %d) at offsets %v; %d produce requests reached the broker",
		copiesA, b.Offset, copiesB, produces.Load())
	if len(copiesA) != 1 {
		t.Errorf("A at offsets %v, want once: the abandoned request was written", copiesA)
	}
	if len(copiesB) != 2 || copiesB[1] != copiesB[0]+1 || b.Offset != copiesB[1] {
		t.Errorf("B at offsets %v, answered at %d: want two adjacent copies, the answer the second's", copiesB, b.Offset)
	}
	if n := produces.Load(); n != 2 {
		t.Errorf("%d produce requests reached the broker, want 2: the abandoned one and its resend, each written once", n)
	}
}
