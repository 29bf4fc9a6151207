// Command proxyload sends records through kproxy the way a client would:
// msgpack maps {"method":M,"seq":N} with keys from K, acks cycling 0, 1,
// -1, every third record a "Login". Each key's records are sent one after
// the other (a sender per group of keys). It prints how many were accepted
// (200) in all and how many of those were Logins.
//
//	go run ./scripts/proxyload -url http://127.0.0.1:5030 -topic t -records 3000 -keys 200
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/valyala/fasthttp"
	"github.com/vmihailenco/msgpack/v5"
)

func main() {
	fs := flag.NewFlagSet("proxyload", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:5030", "kproxy")
	topic := fs.String("topic", "test_topic", "topic")
	records := fs.Int("records", 3000, "records")
	keys := fs.Int("keys", 200, "distinct keys")
	senders := fs.Int("senders", 8, "concurrent senders (each owns a group of keys)")
	from := fs.Int("from", 0, "first sequence number")
	_ = fs.Parse(os.Args[1:])
	var accepted, logins, refused atomic.Int64
	var wg sync.WaitGroup
	for s := range *senders {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			for i := *from; i < *from+*records; i++ {
				if i%*keys%*senders != s {
					continue
				}
				method := "Other"
				if i%3 == 0 {
					method = "Login"
				}
				body, _ := msgpack.Marshal(map[string]any{"method": method, "seq": i})
				acks := []string{"0", "1", "-1"}[i%3]
				req.Reset()
				req.Header.SetMethod("POST")
				req.SetRequestURI(*url + "/commit?topic=" + *topic + "&key=k" + strconv.Itoa(i%*keys) + "&acks=" + acks)
				req.SetBody(body)
				if err := fasthttp.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					refused.Add(1)
					continue
				}
				accepted.Add(1)
				if method == "Login" {
					logins.Add(1)
				}
			}
		})
	}
	wg.Wait()
	fmt.Printf("accepted %d logins %d refused %d\n", accepted.Load(), logins.Load(), refused.Load())
}
