// Command preload writes records into a topic as fast as it can: N records
// of a given size, keyed over K keys, each value a msgpack map with a
// "method" field.
//
//	go run ./scripts/preload -brokers 127.0.0.1:9092 -topic bench -records 200000 -size 200 -keys 10000
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

func main() {
	fs := flag.NewFlagSet("preload", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated brokers")
	topic := fs.String("topic", "bench", "topic")
	records := fs.Int("records", 200_000, "records to write")
	size := fs.Int("size", 200, "value size in bytes")
	keys := fs.Int("keys", 10_000, "distinct keys")
	rate := fs.Int("rate", 0, "records per second at most (0: as fast as possible)")
	_ = fs.Parse(os.Args[1:])

	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewMurmur2Partitioner
	cfg.Producer.Flush.Messages = 500
	cfg.Producer.Flush.Frequency = 5 * time.Millisecond
	p, err := sarama.NewAsyncProducer(strings.Split(*brokers, ","), cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "preload:", err)
		os.Exit(1)
	}
	// {"method":"TestUserName","pad":<string>} padded to size bytes.
	head := "\x82\xa6method\xacTestUserName\xa3pad\xd9"
	pad := max(*size-len(head)-1, 0)
	value := []byte(head + string(rune(0)) + strings.Repeat("x", pad))
	value[len(head)] = byte(pad)
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		var firstErr error
		for range *records {
			select {
			case <-p.Successes():
			case perr := <-p.Errors():
				if firstErr == nil {
					firstErr = perr.Err
				}
			}
		}
		done <- firstErr
	}()
	for i := range *records {
		if *rate > 0 {
			if ahead := time.Duration(i)*time.Second/time.Duration(*rate) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		p.Input() <- &sarama.ProducerMessage{Topic: *topic, Key: sarama.StringEncoder("user" + strconv.Itoa(i%*keys)), Value: sarama.ByteEncoder(value)}
	}
	err = <-done
	p.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "preload:", err)
		os.Exit(1)
	}
	fmt.Printf("preloaded %d records of %d bytes over %d keys into %s in %v\n", *records, len(value), *keys, *topic, time.Since(start).Round(time.Millisecond))
}
