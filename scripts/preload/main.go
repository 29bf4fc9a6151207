// Command preload writes records into a topic as fast as it can: N records
// of a given size, keyed over K keys, each value a msgpack map with a
// "method" field.
//
//	go run ./scripts/preload -brokers 127.0.0.1:9092 -topic bench -records 200000 -size 200 -keys 10000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "preload:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("preload", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated brokers")
	topic := fs.String("topic", "bench", "topic")
	records := fs.Int("records", 200_000, "records to write")
	size := fs.Int("size", 200, "value size in bytes (at most 272)")
	keys := fs.Int("keys", 10_000, "distinct keys")
	rate := fs.Int("rate", 0, "records per second at most (0: as fast as possible)")
	acks := fs.Int("acks", 1, "1: leader only, not idempotent, 5 ms linger (fast); -1: kgo's defaults, the idempotent acks=all producer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *acks != 1 && *acks != -1 {
		return fmt.Errorf("-acks: must be 1 or -1, got %d", *acks)
	}
	if *keys < 1 {
		return fmt.Errorf("-keys: must be >= 1, got %d", *keys)
	}
	// {"method":"TestUserName","pad":<str8>} padded to size bytes.
	head := "\x82\xa6method\xacTestUserName\xa3pad\xd9"
	pad := max(*size-len(head)-1, 0)
	if pad > 255 {
		return fmt.Errorf("-size: at most %d, got %d", len(head)+1+255, *size)
	}
	value := []byte(head + "\x00" + strings.Repeat("x", pad))
	value[len(head)] = byte(pad)

	// Keyed records go where the Java client would put them (murmur2), as
	// kproxy writes them. acks=1: batches of up to 5 ms, fast; acks=-1:
	// nothing but kgo's defaults (idempotent, acks=all), the reference for
	// kproxy's spool drain.
	opts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(*brokers, ",")...),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	}
	if *acks == 1 {
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.ProducerLinger(5*time.Millisecond))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx := context.Background()
	var failed atomic.Int64
	var firstErr atomic.Pointer[error]
	start := time.Now()
	for i := range *records {
		if *rate > 0 {
			if ahead := time.Duration(i)*time.Second/time.Duration(*rate) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		r := &kgo.Record{Topic: *topic, Key: []byte("user" + strconv.Itoa(i%*keys)), Value: value}
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil && failed.Add(1) == 1 {
				firstErr.Store(&err)
			}
		})
	}
	// Every record answered before the client closes.
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d of %d records not written to %s, first: %w", n, *records, *topic, *firstErr.Load())
	}
	fmt.Fprintf(stdout, "preloaded %d records of %d bytes over %d keys into %s in %v\n", *records, len(value), *keys, *topic, time.Since(start).Round(time.Millisecond))
	return nil
}
