package kafkatest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
)

// forwardedTimeout marks the copy of a produce request that AppendThen
// hands to the broker itself, so that the fault does not catch it again.
const forwardedTimeout = 29_999

// Faults injects the faults of a real cluster into a kfake cluster through
// its control hooks. Every fault counts what it did (Injected).
type Faults struct {
	t        testing.TB
	c        *kfake.Cluster
	injected atomic.Int64

	sideOnce sync.Once
	side     *kgo.Client
}

// NewFaults returns the fault injector of c.
func NewFaults(t testing.TB, c *kfake.Cluster) *Faults { return &Faults{t: t, c: c} }

// Injected is how many requests the faults have caught so far.
func (f *Faults) Injected() int64 { return f.injected.Load() }

// budget returns a function that says, once per request, whether the fault
// still applies (n requests in all). The control function is kept, and
// lets every request after the n-th through: kfake drops a control
// function that slept (SleepControl) without its lock once the sleep ends,
// if it was dropped (DropControl, by any of its calls) or not kept, a data
// race with a ControlKey call of the test meanwhile.
func (f *Faults) budget(n int) func() bool {
	var left atomic.Int64
	left.Store(int64(n))
	return func() bool {
		f.c.KeepControl()
		if left.Add(-1) < 0 {
			return false
		}
		f.injected.Add(1)
		return true
	}
}

// CloseConn closes the connection of each of the next n requests of key
// (kmsg.Produce, kmsg.Fetch, …) without answering: the client cannot know
// whether a produce request was applied; this one was not.
func (f *Faults) CloseConn(key int16, n int) {
	take := f.budget(n)
	f.c.ControlKey(key, func(req kmsg.Request) (kmsg.Response, error, bool) {
		if forwarded(req) || !take() {
			return nil, nil, false
		}
		return nil, errors.New("fault: connection closed"), true
	})
}

// ErrorProduce answers each of the next n produce requests with code for
// every partition in it, without writing anything.
func (f *Faults) ErrorProduce(n int, code int16) {
	take := f.budget(n)
	f.c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if forwarded(req) || pr.Acks == 0 || !take() {
			return nil, nil, false
		}
		return ProduceError(pr, code), nil, true
	})
}

// ErrorProduceEvery lets produce requests through but answers every
// every-th of them with code for every partition in it, writing nothing, n
// times in all: one-off refusals among requests that succeed.
func (f *Faults) ErrorProduceEvery(every, n int, code int16) {
	var seen, left atomic.Int64
	left.Store(int64(n))
	f.c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if forwarded(req) || pr.Acks == 0 || seen.Add(1)%int64(every) != 0 {
			f.c.KeepControl()
			return nil, nil, false
		}
		if left.Add(-1) > 0 {
			f.c.KeepControl()
		}
		f.injected.Add(1)
		return ProduceError(pr, code), nil, true
	})
}

// Sleep holds each of the next n requests of key for d before the broker
// handles it normally. Other connections go on meanwhile.
func (f *Faults) Sleep(key int16, n int, d time.Duration) {
	take := f.budget(n)
	f.c.ControlKey(key, func(req kmsg.Request) (kmsg.Response, error, bool) {
		if forwarded(req) || !take() {
			return nil, nil, false
		}
		f.c.SleepControl(func() { time.Sleep(d) })
		return nil, nil, false
	})
}

// AppendThen lets the broker write each of the next n produce requests and
// then answers it with code (kerr codes: REQUEST_TIMED_OUT 7,
// NOT_ENOUGH_REPLICAS_AFTER_APPEND 20, …), or closes the connection when
// code is 0: the records are in the log, the client does not know it.
func (f *Faults) AppendThen(n int, code int16) {
	take := f.budget(n)
	f.c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if forwarded(req) || pr.Acks == 0 || !take() {
			return nil, nil, false
		}
		node := f.c.CurrentNode()
		fwd := *pr
		fwd.TimeoutMillis = forwardedTimeout
		var err error
		f.c.SleepControl(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = f.sideClient().Broker(int(node)).Request(ctx, &fwd)
		})
		if err != nil {
			f.t.Errorf("fault AppendThen: forwarding the produce request to broker %d: %v", node, err)
		}
		if code == 0 {
			return nil, errors.New("fault: connection closed after the append"), true
		}
		return ProduceError(pr, code), nil, true
	})
}

// sideClient is the client AppendThen writes through.
func (f *Faults) sideClient() *kgo.Client {
	f.sideOnce.Do(func() {
		opts, err := kafkaconf.Default().Opts("kafkatest-faults", f.c.ListenAddrs(), nil)
		if err == nil {
			f.side, err = kgo.NewClient(opts...)
		}
		if err != nil {
			f.t.Fatalf("fault client: %v", err)
		}
		f.t.Cleanup(f.side.Close)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.side.Ping(ctx); err != nil {
			f.t.Fatalf("fault client: %v", err)
		}
	})
	return f.side
}

func forwarded(req kmsg.Request) bool {
	pr, ok := req.(*kmsg.ProduceRequest)
	return ok && pr.TimeoutMillis == forwardedTimeout
}

// ProduceError is a produce response giving code for every partition of
// req, writing nothing: a ControlKey function returns it to refuse the
// request.
func ProduceError(req *kmsg.ProduceRequest, code int16) *kmsg.ProduceResponse {
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewProduceResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewProduceResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.ErrorCode = code
			sp.BaseOffset = -1
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// FetchError is a fetch response giving code for every partition of req,
// with no records: a ControlKey function returns it to answer a fetch
// with an error.
func FetchError(req *kmsg.FetchRequest, code int16) *kmsg.FetchResponse {
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewFetchResponseTopic()
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		for _, rp := range rt.Partitions {
			sp := kmsg.NewFetchResponseTopicPartition()
			sp.Partition, sp.ErrorCode = rp.Partition, code
			sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp
}

// EndFetchSession answers a fetch made in a fetch session (KIP-227) after
// its first request with an empty response that names no session: the
// client gives up fetch sessions with that broker, and each fetch it sends
// later names every partition it reads, at the offset it reads from. A
// ControlKey function that picks the fetch to answer by its offsets needs
// this: a fetch in a session leaves out each partition whose offset did
// not change since the request before. It returns nil for a fetch outside
// a session, or the one that opens it (these name every partition).
func EndFetchSession(req *kmsg.FetchRequest) *kmsg.FetchResponse {
	if req.Version < 7 || req.SessionEpoch <= 0 {
		return nil
	}
	return req.ResponseKind().(*kmsg.FetchResponse)
}

// FetchWithoutSessions has every consumer of c give up fetch sessions
// (KIP-227) from its next fetch in one on (EndFetchSession), for the rest
// of the test. kfake keeps a session's partitions by topic name, where
// Kafka keeps them by topic id: a session living across a topic's
// deletion and creation under its name is served the new topic, under
// its new id, which kgo drops as a topic it did not ask for. Its consumer
// of the deleted topic then hears nothing, ever, where Kafka answers
// UNKNOWN_TOPIC_ID (for a fetch naming the deleted id, which is what
// each fetch does without a session). Tests that delete a topic read by a
// consumer and create it again call this first.
func FetchWithoutSessions(c *kfake.Cluster) {
	c.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if end := EndFetchSession(req.(*kmsg.FetchRequest)); end != nil {
			return end, nil, true
		}
		return nil, nil, false
	})
}

// ShuffleEvery moves every partition's leader to a random broker every d
// until the test ends or stop is called; it returns stop, which waits for
// the shuffling to end and reports how many shuffles happened.
func (f *Faults) ShuffleEvery(d time.Duration) (stop func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var n atomic.Int64
	wg.Go(func() {
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				f.c.ShufflePartitionLeaders()
				n.Add(1)
			}
		}
	})
	var once sync.Once
	stop = func() int {
		once.Do(func() { cancel(); wg.Wait() })
		return int(n.Load())
	}
	f.t.Cleanup(func() { stop() })
	return stop
}

// Outage answers every produce request with code (NOT_LEADER_OR_FOLLOWER
// 6: the partitions have no leader, …), writing nothing, until the returned
// end is called (at cleanup at the latest): Kafka is away for producers and
// comes back.
func (f *Faults) Outage(code int16) (end func()) {
	var over atomic.Bool
	f.c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		pr := req.(*kmsg.ProduceRequest)
		if over.Load() {
			return nil, nil, false // dropped: the control is not kept
		}
		f.c.KeepControl()
		if forwarded(req) || pr.Acks == 0 {
			return nil, nil, false
		}
		f.injected.Add(1)
		return ProduceError(pr, code), nil, true
	})
	var once sync.Once
	end = func() { once.Do(func() { over.Store(true) }) }
	f.t.Cleanup(end)
	return end
}
