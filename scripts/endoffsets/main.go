// Command endoffsets prints the sum of a topic's log-end offsets (the
// number of records ever written to a fresh topic), or one line per
// partition with -v.
//
//	go run ./scripts/endoffsets -brokers 127.0.0.1:9092 -topic bench
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/IBM/sarama"
)

func main() {
	fs := flag.NewFlagSet("endoffsets", flag.ExitOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated broker list")
	topic := fs.String("topic", "", "topic")
	verbose := fs.Bool("v", false, "print each partition")
	_ = fs.Parse(os.Args[1:])
	if err := run(strings.Split(*brokers, ","), *topic, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "endoffsets:", err)
		os.Exit(1)
	}
}

func run(brokers []string, topic string, verbose bool) error {
	client, err := sarama.NewClient(brokers, sarama.NewConfig())
	if err != nil {
		return err
	}
	defer client.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("topic %q: %w", topic, err)
	}
	var sum int64
	for _, p := range parts {
		off, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("end offset of %s/%d: %w", topic, p, err)
		}
		if verbose {
			fmt.Printf("%s/%d %d\n", topic, p, off)
		}
		sum += off
	}
	fmt.Println(sum)
	return nil
}
