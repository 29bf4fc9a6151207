package kproxy

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/valyala/fasthttp"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// BenchmarkSpool202 is the 202 path of scripts/bench-spool.sh without
// HTTP's sockets: the broker holds every produce request (as a frozen
// one does), the topic spools, and 64 goroutines call the handler with
// POST /commit?acks=-1, a 200-byte body and a key from 10,000; every
// answer must be 202. cpu-ns/op is the process's CPU time (user and
// system, getrusage) per record: the handler, the spool's appender and
// fsyncs, the drain and the garbage collector (the benchmark's own loop
// is a few allocation-free calls per record).
//
//	go test -run '^$' -bench Spool202 -benchtime 100000x ./kproxy
func BenchmarkSpool202(b *testing.B) {
	const topic = "bench"
	c := kafkatest.Start(b, []kafkatest.Topic{{Name: topic, Partitions: 4}})
	s := runBenchServer(b, c.ListenAddrs(), func(cfg *Config) {
		cfg.SpoolDir = b.TempDir()
		cfg.SpoolAfterMs = 200
		cfg.ProduceTimeoutMs = 3000
	})
	body := make([]byte, 200)
	body[0] = 0xc4 // msgpack bin 8 of 198 bytes
	body[1] = 198
	call := func(rc *fasthttp.RequestCtx, uri string) int {
		rc.Request.Reset()
		rc.Response.Reset()
		rc.Request.Header.SetMethod(fasthttp.MethodPost)
		rc.Request.SetRequestURI(uri)
		rc.Request.SetBody(body)
		s.handle(rc)
		return rc.Response.StatusCode()
	}
	newCtx := func() *fasthttp.RequestCtx {
		rc := &fasthttp.RequestCtx{}
		rc.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
		return rc
	}
	rc := newCtx()
	if code := call(rc, "/commit?topic="+topic+"&acks=-1&key=first"); code != fasthttp.StatusOK {
		b.Fatalf("the first record: %d %s", code, rc.Response.Body())
	}
	// Kafka freezes: every produce request waits until the benchmark ends.
	thawed := make(chan struct{})
	var thaw sync.Once
	b.Cleanup(func() { thaw.Do(func() { close(thawed) }) }) // before the cluster closes: it waits for the control
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		select {
		case <-thawed:
			return nil, nil, false
		default:
		}
		c.KeepControl()
		<-thawed
		return nil, nil, false
	})
	for range 3 { // a record already out may be answered 504 at produce_timeout_ms
		if code := call(rc, "/commit?topic="+topic+"&acks=-1&key=flip"); code == fasthttp.StatusAccepted {
			break
		}
	}
	if code := rc.Response.StatusCode(); code != fasthttp.StatusAccepted {
		b.Fatalf("no 202 with kafka frozen: %d %s", code, rc.Response.Body())
	}

	var uris [10000]string
	for i := range uris {
		uris[i] = "/commit?topic=" + topic + "&acks=-1&key=user" + strconv.Itoa(i)
	}
	var next atomic.Int64
	cpu0 := cpuTime(b)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			rc := newCtx()
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				if code := call(rc, uris[n%int64(len(uris))]); code != fasthttp.StatusAccepted {
					b.Errorf("answer %d: %s", code, rc.Response.Body())
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// Counting an answer of a status the handlers write takes no allocation:
// its counter is resolved at start. 202 (spooled) was missing, and every
// spooled record cost a label lookup and a string.
func TestAnsweredCodesResolved(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry(), &atomic.Int64{})
	for _, code := range []int{200, 202, 207, 503, 504} {
		if n := testing.AllocsPerRun(100, func() { m.answered(code) }); n != 0 {
			t.Errorf("answered(%d): %v allocations", code, n)
		}
	}
}
