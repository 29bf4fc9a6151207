// Command endoffsets prints the sum of a topic's log-end offsets (the
// number of records ever written to a fresh topic), or one line per
// partition with -v; with -delete it then deletes the topic (a benchmark
// gives the test broker's memory back between runs, so that a later run
// does not pay for the records of the earlier ones).
//
//	go run ./scripts/endoffsets -brokers 127.0.0.1:9092 -topic bench
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	fs := flag.NewFlagSet("endoffsets", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated broker list")
	topic := fs.String("topic", "", "topic")
	verbose := fs.Bool("v", false, "print each partition")
	del := fs.Bool("delete", false, "delete the topic once counted")
	_ = fs.Parse(os.Args[1:])
	if err := run(os.Stdout, strings.Split(*brokers, ","), *topic, *verbose, *del); err != nil {
		fmt.Fprintln(os.Stderr, "endoffsets:", err)
		os.Exit(1)
	}
}

func run(stdout io.Writer, brokers []string, topic string, verbose, del bool) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	parts := ends[topic]
	if o, ok := parts[-1]; ok && o.Err != nil {
		return fmt.Errorf("topic %q: %w", topic, o.Err)
	}
	if len(parts) == 0 {
		return fmt.Errorf("topic %q: no partition listed", topic)
	}
	var sum int64
	for _, p := range slices.Sorted(maps.Keys(parts)) {
		o := parts[p]
		if o.Err != nil {
			return fmt.Errorf("end offset of %s/%d: %w", topic, p, o.Err)
		}
		if verbose {
			fmt.Fprintf(stdout, "%s/%d %d\n", topic, p, o.Offset)
		}
		sum += o.Offset
	}
	fmt.Fprintln(stdout, sum)
	if del {
		rs, err := kadm.NewClient(cl).DeleteTopics(ctx, topic)
		if err == nil {
			_, err = rs.On(topic, nil)
		}
		if err != nil {
			return fmt.Errorf("delete %s: %w", topic, err)
		}
	}
	return nil
}
