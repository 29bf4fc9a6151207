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
// latest push, and "steady_rate", between the 10% and 90% marks; with
// -delay also "delay_mean_us", how long pushes were held on average.
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

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/msgpackscan"
)

type stats struct {
	mu         sync.Mutex
	pushes     int64
	seen       map[string]bool  // partition/offset
	last       map[string]int64 // key → highest offset so far
	violations int64
	firstErr   string
	wrong      int64       // pushes whose method was not -method
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
	stateFile := fs.String("state", "", "keep what was received in this file across restarts (read at start, written at stop)")
	method := fs.String("method", "", "count pushes whose msgpack \"method\" is not this as wrong_method")
	_ = fs.Parse(os.Args[1:])
	s := &stats{seen: map[string]bool{}, last: map[string]int64{}}
	var hold *delayer
	if *delay > 0 {
		var err error
		if hold, err = newDelayer(*delay); err != nil {
			fmt.Fprintln(os.Stderr, "sink:", err)
			os.Exit(1)
		}
	}
	if *stateFile != "" {
		if err := s.load(*stateFile); err != nil {
			fmt.Fprintln(os.Stderr, "sink:", err)
			os.Exit(1)
		}
	}
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
			answer := map[string]any{"pushes": s.pushes, "distinct": len(s.seen), "keys": len(s.last),
				"order_violations": s.violations, "first_violation": s.firstErr, "rate": int64(rate), "steady_rate": int64(steady),
				"wrong_method": s.wrong}
			if hold != nil {
				answer["delay_mean_us"] = hold.mean().Microseconds()
			}
			b, _ := json.Marshal(answer)
			s.mu.Unlock()
			ctx.SetContentType("application/json")
			ctx.SetBody(b)
			return
		}
		partition := string(ctx.Request.Header.Peek("X-Kafka-Partition"))
		offset, _ := strconv.ParseInt(string(ctx.Request.Header.Peek("X-Kafka-Offset")), 10, 64)
		key := string(ctx.QueryArgs().Peek("key"))
		now := time.Now()
		wrong := false
		if *method != "" {
			m, err := msgpackscan.MapString(ctx.PostBody(), "method")
			wrong = err != nil || m != *method
		}
		s.mu.Lock()
		if wrong {
			s.wrong++
		}
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
		if hold != nil {
			hold.hold(now)
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
	if *stateFile != "" {
		if err := s.save(*stateFile); err != nil {
			fmt.Fprintln(os.Stderr, "sink:", err)
			os.Exit(1)
		}
	}
}

// saved is what -state keeps: enough to go on counting and checking order.
type saved struct {
	Pushes     int64            `json:"pushes"`
	Seen       []string         `json:"seen"`
	Last       map[string]int64 `json:"last"`
	Violations int64            `json:"violations"`
	FirstErr   string           `json:"first_err"`
	Wrong      int64            `json:"wrong_method"`
}

func (s *stats) save(path string) error {
	s.mu.Lock()
	v := saved{Pushes: s.pushes, Last: s.last, Violations: s.violations, FirstErr: s.firstErr, Wrong: s.wrong}
	for id := range s.seen {
		v.Seen = append(v.Seen, id)
	}
	s.mu.Unlock()
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func (s *stats) load(path string) error {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var v saved
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("state %s: %w", path, err)
	}
	s.pushes, s.last, s.violations, s.firstErr, s.wrong = v.Pushes, v.Last, v.Violations, v.FirstErr, v.Wrong
	if s.last == nil {
		s.last = map[string]int64{}
	}
	for _, id := range v.Seen {
		s.seen[id] = true
	}
	return nil
}
