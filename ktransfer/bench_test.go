package ktransfer

import (
	"net"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
)

// benchBackend is a fasthttp server on 127.0.0.1 answering 200 to
// everything, closed with the benchmark.
func benchBackend(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {}}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// cpuTime is the process's CPU time so far (user and system).
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runPushes runs body in 100 goroutines (the scripts' worker_num on 2
// cores) and reports the CPU time per push, the local backend's included:
// on a shared machine a steadier figure than ns/op.
func runPushes(b *testing.B, body func(*testing.PB)) {
	b.ReportAllocs()
	b.SetParallelism(max(1, 100/runtime.GOMAXPROCS(0)))
	cpu0 := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(body)
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// benchRecords are n 200-byte records over 10,000 keys, as in the
// scripts' benchmark.
func benchRecords(n int) []*record {
	recs := make([]*record, n)
	value := make([]byte, 200)
	// Each of a claim's partitions, as a module's records have: a push
	// notes its claim's (pusher.conns).
	parts := make([]*partition, 4)
	for i := range parts {
		parts[i] = &partition{id: int32(i), epoch: 1}
	}
	for i := range recs {
		recs[i] = &record{part: parts[i%4], msg: &kgo.Record{Topic: "bench", Partition: int32(i % 4), Offset: int64(i),
			Key: []byte("key-" + strconv.Itoa(i%10_000)), Value: value}}
	}
	return recs
}

// BenchmarkPush is one record's push as a worker does it, against a local
// backend, 100 pushes in parallel (the scripts' worker_num).
func BenchmarkPush(b *testing.B) {
	m := DefaultModule()
	m.Topic = "bench"
	m.Protocol.URI = "/push/{#TOPIC}?key={#KEY}&transid={#TRANSID}"
	m.Protocol.WriteTimeoutMs = 1000
	m.BackendServers = []string{benchBackend(b)}
	p, err := newPusher(m)
	if err != nil {
		b.Fatal(err)
	}
	recs := benchRecords(10_000)
	var next atomic.Int64
	runPushes(b, func(pb *testing.PB) {
		var buf []byte
		for pb.Next() {
			r := recs[next.Add(1)%int64(len(recs))]
			if a := p.push(0, r, &buf); a.err != nil || a.status != 200 {
				b.Errorf("push: %+v", a)
			}
		}
	})
}

// BenchmarkPushReference is the same push as scripts/kgopusher makes it:
// the reference BenchmarkPush is compared with.
func BenchmarkPushReference(b *testing.B) {
	target := "http://" + benchBackend(b) + "/push"
	c := &fasthttp.Client{MaxConnsPerHost: 100}
	recs := benchRecords(10_000)
	var next atomic.Int64
	runPushes(b, func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		for pb.Next() {
			r := recs[next.Add(1)%int64(len(recs))].msg
			req.Reset()
			req.Header.SetMethod(fasthttp.MethodPost)
			req.SetRequestURI(target + "?key=" + url.QueryEscape(string(r.Key)))
			req.Header.Set("X-Kafka-Partition", strconv.Itoa(int(r.Partition)))
			req.Header.Set("X-Kafka-Offset", strconv.FormatInt(r.Offset, 10))
			req.SetBodyRaw(r.Value)
			if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Errorf("push: %v %d", err, resp.StatusCode())
			}
		}
	})
}

// BenchmarkDispatch is a record's way around the push: window slot,
// tracker, scheduler (idle_worker), 100 workers, acknowledgement; the
// push itself is left out.
func BenchmarkDispatch(b *testing.B) {
	cfg := DefaultModule()
	cfg.WindowSize = 1000
	m := &module{cfg: cfg, slots: make(chan struct{}, cfg.WindowSize), commitKick: make(chan struct{}, 1)}
	m.sched = newScheduler(cfg)
	parts := make([]*partition, 4)
	for i := range parts {
		parts[i] = &partition{m: m, id: int32(i), tracker: newTracker(0)}
	}
	// The committer: frees the slots of what was acknowledged.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-m.commitKick:
			case <-b.Context().Done():
				return
			}
			for _, p := range parts {
				if off, n, ok := p.tracker.toCommit(); ok {
					p.tracker.committedAt(off, n)
					m.uncommitted.Add(-int64(n))
					for range n {
						<-m.slots
					}
				}
			}
		}
	}()
	var workers sync.WaitGroup
	for i := range cfg.WorkerNum {
		workers.Go(func() {
			m.sched.work(i, func(r *record) { m.ack(r) })
		})
	}
	keys := make([][]byte, 10_000)
	for i := range keys {
		keys[i] = []byte("key-" + strconv.Itoa(i))
	}
	value := make([]byte, 200)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for i := range b.N {
		p := parts[i%4]
		r := &record{msg: &kgo.Record{Topic: "bench", Partition: p.id, Offset: int64(i / 4), Key: keys[i%len(keys)], Value: value}, part: p}
		for len(m.slots) == cap(m.slots) {
			m.kickCommit()
			runtime.Gosched()
		}
		m.slots <- struct{}{}
		p.tracker.dispatch(r.msg.Offset)
		m.sched.put(b.Context(), r)
	}
	m.sched.close()
	workers.Wait()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}
