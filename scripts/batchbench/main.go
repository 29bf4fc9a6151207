// Command batchbench writes batches of -records records of -size bytes
// (keys from -keys) from -c concurrent senders for -d, and prints the
// records written per second:
//
//   - -mode http: POST /batch?topic=T&acks=A to kproxy, a msgpack array of
//     {"key", "value"} maps; a record counts when its batch is answered 200
//     (a 207's written records count too).
//   - -mode grpc: kproxy's gRPC ProduceStream, one stream (on a connection
//     of its own) per sender, each request a batch, at most -window
//     requests of a stream awaiting their answer; a record counts as in
//     http mode.
//   - -mode kgo: the franz-go producer alone, one client shared by the
//     senders, each writing its batch with ProduceSync and waiting for it,
//     with the settings of kproxy's client for that acks level (acks=1:
//     leader acks, not idempotent, one produce request in flight per
//     broker; acks=-1: all in-sync replicas, idempotent), no linger, no
//     compression, murmur2 keys: the ceiling of the library for the same
//     records on the same machine.
//
// It prints one line: "records N seconds S records/s R failed F cpu_us/record C",
// C being this process's own CPU time (user and system) per record written.
//
//	go run ./scripts/batchbench -mode kgo -brokers 127.0.0.1:9092 -topic t
//	go run ./scripts/batchbench -mode http -url http://127.0.0.1:5030 -topic t
//	go run ./scripts/batchbench -mode grpc -grpc 127.0.0.1:5031 -topic t
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
	"github.com/vmihailenco/msgpack/v5"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("batchbench", flag.ContinueOnError)
	mode := fs.String("mode", "http", "http (through kproxy's /batch), grpc (kproxy's ProduceStream) or kgo (the franz-go producer alone)")
	url := fs.String("url", "http://127.0.0.1:5030", "kproxy (http mode)")
	grpcAddr := fs.String("grpc", "127.0.0.1:5031", "kproxy's grpc_port, host:port (grpc mode)")
	window := fs.Int("window", 1, "requests of a stream awaiting their answer at most (grpc mode)")
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers (kgo mode)")
	topic := fs.String("topic", "bench", "topic")
	acks := fs.String("acks", "1", "1 or -1")
	conns := fs.Int("c", 16, "concurrent senders (HTTP connections)")
	dur := fs.Duration("d", 10*time.Second, "how long to send")
	records := fs.Int("records", 100, "records per batch")
	size := fs.Int("size", 200, "bytes per record value (a msgpack map)")
	keys := fs.Int("keys", 10_000, "distinct keys")
	cpuProfile := fs.String("cpuprofile", "", "write this process's CPU profile of the run to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *acks != "1" && *acks != "-1" {
		fmt.Fprintln(os.Stderr, "batchbench: -acks must be 1 or -1")
		return 2
	}
	value, err := valueOf(*size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "batchbench:", err)
		return 2
	}
	var send func(sender int) batcher
	switch *mode {
	case "http":
		h := httpSender(*url, *topic, *acks, *conns, *records, *keys, value)
		send = func(s int) batcher { return batcher{next: h(s)} }
	case "grpc":
		g, err := newGRPCSender(*grpcAddr, *topic, *acks, *conns, *records, *keys, *window, value)
		if err != nil {
			fmt.Fprintln(os.Stderr, "batchbench:", err)
			return 1
		}
		defer g.close()
		send = g.sender
	case "kgo":
		cl, err := kgoClient(*brokers, *acks)
		if err != nil {
			fmt.Fprintln(os.Stderr, "batchbench:", err)
			return 1
		}
		defer cl.Close()
		k := kgoSender(cl, *topic, *records, *keys, value)
		send = func(s int) batcher { return batcher{next: k(s)} }
	default:
		fmt.Fprintln(os.Stderr, "batchbench: -mode must be http, grpc or kgo")
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "batchbench:", err)
			return 1
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(*dur)
	start := time.Now()
	var wg sync.WaitGroup
	for s := range *conns {
		wg.Go(func() {
			bt := send(s)
			count := func(o, f int, err error) {
				ok.Add(int64(o))
				failed.Add(int64(f))
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
			for b := 0; time.Now().Before(stop); b++ {
				count(bt.next(b))
			}
			if bt.finish != nil {
				count(bt.finish())
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	fmt.Printf("records %d seconds %.2f records/s %.0f failed %d cpu_us/record %.2f\n", ok.Load(), secs, float64(ok.Load())/secs,
		failed.Load(), float64(cpu.Microseconds())/float64(max(ok.Load(), 1)))
	if e := firstErr.Load(); e != nil {
		fmt.Fprintln(os.Stderr, "batchbench: first error:", e)
	}
	return 0
}

// batcher is one sender's batches: next sends batch b and reports what
// was answered; finish, when not nil, waits for the answers still to come
// once the clock stopped (they count, and so does the time).
type batcher struct {
	next   func(batch int) (ok, failed int, err error)
	finish func() (ok, failed int, err error)
}

// valueOf is a msgpack map {"method":"TestUserName","uid":12345,
// "payload":"xx…"} of exactly size bytes.
func valueOf(size int) ([]byte, error) {
	const fixed = 36 // the map without the payload string
	for _, h := range []struct{ header, max int }{{1, 31}, {2, 255}, {3, 65535}, {5, 1 << 30}} {
		n := size - fixed - h.header
		if n < 0 || n > h.max {
			continue
		}
		v, err := msgpack.Marshal(map[string]any{"method": "TestUserName", "uid": 12345, "payload": strings.Repeat("x", n)})
		if err != nil {
			return nil, err
		}
		if len(v) == size {
			return v, nil
		}
	}
	return nil, fmt.Errorf("no value of exactly %d bytes (at least %d)", size, fixed+1)
}

// keyList is the keys, "user0" … in order.
func keyList(keys int) [][]byte {
	out := make([][]byte, keys)
	for i := range out {
		out[i] = []byte("user" + strconv.Itoa(i))
	}
	return out
}

// first is the index in the key list of the first key of batch b of
// sender s: batches take the keys in turn, each sender from its own
// place, so that both modes write the same keys.
func first(s, b, records, keys int) int { return (s*7919 + b*records) % keys }

func httpSender(url, topic, acks string, conns, records, keys int, value []byte) func(int) func(int) (int, int, error) {
	client := &fasthttp.Client{MaxConnsPerHost: conns, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	uri := url + "/batch?topic=" + topic + "&acks=" + acks
	// The bodies are built before the clock starts, one per place in the
	// key list a batch can start at, as wrk sends a body built once.
	kl := keyList(keys)
	bodies := map[int][]byte{}
	for s := range conns {
		for b := 0; ; b++ {
			f := first(s, b, records, keys)
			if _, ok := bodies[f]; ok {
				break
			}
			bodies[f] = batchBody(nil, kl, f, records, value)
		}
	}
	return func(s int) func(int) (int, int, error) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.Header.SetMethod("POST")
		req.Header.SetContentType("application/msgpack")
		req.SetRequestURI(uri)
		return func(b int) (int, int, error) {
			req.SetBodyRaw(bodies[first(s, b, records, keys)])
			if err := client.Do(req, resp); err != nil {
				return 0, records, err
			}
			switch resp.StatusCode() {
			case 200:
				return records, 0, nil
			case 207:
				var a struct {
					Results []struct{ Status int } `json:"results"`
				}
				if err := json.Unmarshal(resp.Body(), &a); err != nil {
					return 0, records, err
				}
				ok := 0
				for _, r := range a.Results {
					if r.Status == 200 {
						ok++
					}
				}
				return ok, records - ok, fmt.Errorf("207: %.200s", resp.Body())
			}
			return 0, records, fmt.Errorf("%d: %.200s", resp.StatusCode(), resp.Body())
		}
	}
}

// batchBody appends a msgpack array of records maps {"key", "value"}, the
// keys from kl[from] on.
func batchBody(b []byte, kl [][]byte, from, records int, value []byte) []byte {
	b = append(b, 0xdc, byte(records>>8), byte(records))
	for i := range records {
		k := kl[(from+i)%len(kl)]
		b = append(b, 0x82, 0xa3, 'k', 'e', 'y', 0xa0|byte(len(k)))
		b = append(b, k...)
		b = append(b, 0xa5, 'v', 'a', 'l', 'u', 'e')
		b = append(b, value...)
	}
	return b
}

func kgoClient(brokers, acks string) (*kgo.Client, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.MaxBufferedRecords(1 << 20),
	}
	if acks == "1" {
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.MaxProduceRequestsInflightPerBroker(1))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

func kgoSender(cl *kgo.Client, topic string, records, keys int, value []byte) func(int) func(int) (int, int, error) {
	kl := keyList(keys)
	return func(s int) func(int) (int, int, error) {
		// ProduceSync returns when kgo is done with the records: they
		// are filled again for the next batch, as kproxy reuses its own.
		mem := make([]kgo.Record, records)
		recs := make([]*kgo.Record, records)
		return func(b int) (int, int, error) {
			f := first(s, b, records, keys)
			for i := range recs {
				mem[i] = kgo.Record{Topic: topic, Key: kl[(f+i)%keys], Value: value}
				recs[i] = &mem[i]
			}
			ok, failed := 0, 0
			var first error
			for _, r := range cl.ProduceSync(context.Background(), recs...) {
				if r.Err != nil {
					failed++
					if first == nil {
						first = r.Err
					}
					continue
				}
				ok++
			}
			return ok, failed, first
		}
	}
}
