// Command kgopusher is the reference ktransfer is measured against: the
// shortest key-sharded Kafka → HTTP pusher on franz-go, without commits,
// window or retries. It reads a topic from the start, hands each record to
// worker hash(key) % workers (so one key's records are pushed in order),
// and each worker POSTs its records one after the other, as ktransfer
// does: body = value, ?key=, X-Kafka-Partition and X-Kafka-Offset headers.
// It stops after n records and prints the rate from the first record
// polled to the last push answered.
//
//	go run ./scripts/kgopusher -brokers 127.0.0.1:9092 -topic bench -url http://127.0.0.1:8080/push -n 200000
package main

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
)

func main() {
	fs := flag.NewFlagSet("kgopusher", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	topic := fs.String("topic", "bench", "topic, read from the start")
	target := fs.String("url", "http://127.0.0.1:8080/push", "where to POST each record")
	n := fs.Int("n", 200_000, "records to push, then stop")
	workers := fs.Int("workers", 100, "workers (pushes in parallel)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	_ = fs.Parse(os.Args[1:])
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "kgopusher:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...), kgo.ConsumeTopics(*topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "kgopusher:", err)
		os.Exit(1)
	}
	defer cl.Close()
	http := &fasthttp.Client{MaxConnsPerHost: *workers}
	queues := make([]chan *kgo.Record, *workers)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for w := range queues {
		queues[w] = make(chan *kgo.Record, 64)
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			for r := range queues[w] {
				req.Reset()
				req.Header.SetMethod(fasthttp.MethodPost)
				req.SetRequestURI(*target + "?key=" + url.QueryEscape(string(r.Key)))
				req.Header.Set("X-Kafka-Partition", strconv.Itoa(int(r.Partition)))
				req.Header.Set("X-Kafka-Offset", strconv.FormatInt(r.Offset, 10))
				req.SetBodyRaw(r.Value)
				if err := http.Do(req, resp); err != nil || resp.StatusCode() != fasthttp.StatusOK {
					failed.Add(1)
				}
			}
		})
	}
	var start time.Time
	for seen := 0; seen < *n; {
		fetches := cl.PollFetches(context.Background())
		fetches.EachError(func(t string, p int32, err error) {
			fmt.Fprintf(os.Stderr, "kgopusher: fetch %s/%d: %v\n", t, p, err)
		})
		if start.IsZero() {
			start = time.Now()
		}
		for it := fetches.RecordIter(); !it.Done() && seen < *n; seen++ {
			r := it.Next()
			h := fnv.New32a()
			h.Write(r.Key)
			queues[h.Sum32()%uint32(*workers)] <- r
		}
	}
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	d := time.Since(start)
	fmt.Printf("%d records, %d failed, in %v: %.0f records/s\n", *n, failed.Load(), d.Round(time.Millisecond), float64(*n)/d.Seconds())
}
