// Command sink is a backend for ktransfer in benchmarks, the demo and the
// end-to-end checks: it answers every push, counts them, and checks that
// each key's records arrive in offset order (a repeat of an earlier record
// is allowed, skipping back further is not). The key comes from the "key"
// query parameter ({#KEY} in the module's uri).
//
//	go run ./scripts/sink -addr 127.0.0.1:8080 [-delay 5ms] [-print]
//
// GET /stats answers {"pushes":N,"distinct":N,"keys":N,"order_violations":N,
// "rate":R}, R being distinct records per second between the first and the
// latest push, and "steady_rate", between the 10% and 90% marks.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

type stats struct {
	mu         sync.Mutex
	pushes     int64
	seen       map[string]bool  // partition/offset
	last       map[string]int64 // key → highest offset so far
	violations int64
	firstErr   string
	first      time.Time   // of the first push
	latest     time.Time   // of the latest push
	arrivals   []time.Time // when each distinct record first arrived
}

func main() {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	delay := fs.Duration("delay", 0, "answer each push after this long")
	print := fs.Bool("print", false, "print each push")
	status := fs.Int("status", 200, "status to answer pushes with")
	_ = fs.Parse(os.Args[1:])
	s := &stats{seen: map[string]bool{}, last: map[string]int64{}}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/stats" {
			s.mu.Lock()
			span := s.latest.Sub(s.first).Seconds()
			rate := 0.0
			if span > 0 {
				rate = float64(len(s.seen)) / span
			}
			// The steady rate leaves out the ramp-up and the drain: records
			// per second between the arrivals of the 10% and 90% marks.
			steady := 0.0
			if n := len(s.arrivals); n >= 100 {
				lo, hi := n/10, n*9/10
				if d := s.arrivals[hi].Sub(s.arrivals[lo]).Seconds(); d > 0 {
					steady = float64(hi-lo) / d
				}
			}
			b, _ := json.Marshal(map[string]any{"pushes": s.pushes, "distinct": len(s.seen), "keys": len(s.last),
				"order_violations": s.violations, "first_violation": s.firstErr, "rate": int64(rate), "steady_rate": int64(steady)})
			s.mu.Unlock()
			ctx.SetContentType("application/json")
			ctx.SetBody(b)
			return
		}
		partition := string(ctx.Request.Header.Peek("X-Kafka-Partition"))
		offset, _ := strconv.ParseInt(string(ctx.Request.Header.Peek("X-Kafka-Offset")), 10, 64)
		key := string(ctx.QueryArgs().Peek("key"))
		now := time.Now()
		s.mu.Lock()
		if s.pushes == 0 {
			s.first = now
		}
		s.latest = now
		s.pushes++
		id := partition + "/" + strconv.FormatInt(offset, 10)
		repeat := s.seen[id]
		s.seen[id] = true
		if !repeat {
			s.arrivals = append(s.arrivals, now)
		}
		if key != "" {
			k := partition + "/" + key
			last, ok := s.last[k]
			// Below the key's highest offset is fine only for a record that
			// came before (a re-push after a restart); a new one means the
			// key's records went out of order.
			if ok && offset < last && !repeat {
				s.violations++
				if s.firstErr == "" {
					s.firstErr = fmt.Sprintf("key %s: new offset %d after %d", k, offset, last)
				}
			}
			if !ok || offset > last {
				s.last[k] = offset
			}
		}
		s.mu.Unlock()
		if *print {
			fmt.Printf("push  partition %s offset %-6d key %-10s %s %d bytes\n", partition, offset, key, ctx.Path(), len(ctx.PostBody()))
		}
		if *delay > 0 {
			time.Sleep(*delay)
		}
		ctx.SetStatusCode(*status)
	}}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		<-sig
		_ = srv.Shutdown()
	}()
	if err := srv.ListenAndServe(*addr); err != nil {
		fmt.Fprintln(os.Stderr, "sink:", err)
		os.Exit(1)
	}
}
