// Command httploop is the ceiling for ktransfer's benchmark: a plain
// fasthttp client loop POSTing N bodies with C concurrent workers to one
// URL, as fast as the server answers. It prints requests per second.
// Request i carries key i % keys and, for the sink's bookkeeping, partition
// i % partitions and offset i, as the records of a topic would.
//
//	go run ./scripts/httploop -url http://127.0.0.1:8080/p -n 200000 -c 100 -size 200
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	fs := flag.NewFlagSet("httploop", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:8080/p", "target")
	n := fs.Int("n", 200_000, "requests")
	c := fs.Int("c", 100, "concurrent workers")
	size := fs.Int("size", 200, "body size")
	keys := fs.Int("keys", 10_000, "distinct keys, sent as ?key=")
	partitions := fs.Int("partitions", 4, "X-Kafka-Partition cycles over this many, as records of a topic of this many partitions would")
	_ = fs.Parse(os.Args[1:])
	client := &fasthttp.Client{MaxConnsPerHost: *c}
	body := make([]byte, *size)
	var next, failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range *c {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			for {
				i := next.Add(1) - 1
				if i >= int64(*n) {
					return
				}
				req.Reset()
				req.SetRequestURI(*url + "?key=loop" + strconv.Itoa(int(i)%*keys))
				req.Header.SetMethod(fasthttp.MethodPost)
				req.Header.Set("X-Kafka-Partition", strconv.Itoa(int(i)%*partitions))
				req.Header.Set("X-Kafka-Offset", strconv.FormatInt(i, 10))
				req.SetBodyRaw(body)
				if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	d := time.Since(start)
	fmt.Printf("%d requests, %d failed, in %v: %.0f req/s\n", *n, failed.Load(), d.Round(time.Millisecond), float64(*n)/d.Seconds())
}
