package kproxy

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"google.golang.org/protobuf/proto"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// BenchmarkBatchProduce: a batch of 100 records of 200 bytes (the
// records of scripts/bench-batch.sh) through the whole produce path, from
// the request's bytes to its answer's, to three kfake brokers in this
// process, from 16 goroutines: http is POST /batch?acks=1 (the handler),
// grpc a ProduceRequest with acks 1 (what Produce and ProduceStream share:
// reading, checks, produceBatch, the answer's encoding). An op is a batch;
// ns/op includes the brokers' work. kfake keeps every record in memory
// (about 25 MB per 1,000 ops): bound the run, e.g.
//
//	go test -run '^$' -bench BatchProduce -benchtime 2000x ./kproxy
func BenchmarkBatchProduce(b *testing.B) {
	c := kafkatest.StartBrokers(b, 3, []kafkatest.Topic{{Name: "bench", Partitions: 4}})
	cfg := DefaultConfig()
	cfg.BrokerHosts = c.ListenAddrs()
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	value := benchValue(b)
	keys := make([][]byte, 100)
	for i := range keys {
		keys[i] = []byte("user" + strconv.Itoa(i*37))
	}

	b.Run("http", func(b *testing.B) {
		recs := make([]any, len(keys))
		for i, k := range keys {
			recs[i] = map[string]any{"key": string(k), "value": msgpack.RawMessage(value)}
		}
		body, err := msgpack.Marshal(recs)
		if err != nil {
			b.Fatal(err)
		}
		raw := "POST /batch?topic=bench&acks=1 HTTP/1.1\r\nHost: kproxy\r\nContent-Type: application/msgpack\r\n" +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
		s.handle(requestCtx(b, raw)) // the topic's metadata, outside the timing
		benchParallel(b, 16, func(pb *testing.PB) {
			ctx := requestCtx(b, raw)
			for pb.Next() {
				ctx.Response.Reset()
				s.handle(ctx)
				if code := ctx.Response.StatusCode(); code != 200 {
					b.Fatalf("status %d: %s", code, ctx.Response.Body())
				}
			}
		})
	})

	b.Run("grpc", func(b *testing.B) {
		req := &kproxypb.ProduceRequest{Topic: "bench", Acks: proto.Int32(1)}
		for _, k := range keys {
			req.Records = append(req.Records, &kproxypb.Record{Key: k, Value: value})
		}
		msg, err := proto.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		produce := func(buf []byte) []byte {
			j := getBatchJob()
			defer j.release()
			j.body = append(j.body[:0], msg...)
			a, err := s.produceRequest(context.Background(), j, callExt{}, s.acl(), nil)
			if err != nil || a.status != 200 {
				b.Fatalf("status %d: %s (%v)", a.status, a.reason, err)
			}
			return a.appendTo(buf[:0])
		}
		produce(nil)
		benchParallel(b, 16, func(pb *testing.PB) {
			var buf []byte
			for pb.Next() {
				buf = produce(buf)
			}
		})
	})
}

// benchParallel runs body on n goroutines (bench-batch.sh's 16 senders,
// bench-kproxy.sh's 64 connections). Besides ns/op it reports cpu-ns/op,
// the process's CPU time (user and system, the brokers' included) per op,
// which holds still on a machine that other work shares.
func benchParallel(b *testing.B, n int, body func(*testing.PB)) {
	b.ReportAllocs()
	b.SetParallelism(max(1, n/runtime.GOMAXPROCS(0)))
	cpu0 := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(body)
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's CPU time so far (user and system).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchValue is bench-batch.sh's value: a msgpack map of 200 bytes.
func benchValue(b *testing.B) []byte {
	for n := 150; n < 170; n++ {
		v, err := msgpack.Marshal(map[string]any{"method": "TestUserName", "uid": 12345, "payload": strings.Repeat("x", n)})
		if err != nil {
			b.Fatal(err)
		}
		if len(v) == 200 {
			return v
		}
	}
	b.Fatal("no 200-byte value")
	return nil
}
