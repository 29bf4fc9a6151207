package kproxy_test

import (
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestSpoolGatesOfRefusedTopicsFreed: with the spool on and Kafka away,
// every topic name a request gives gets a gate (its records' way between
// Kafka's client and the spool), whether its record is spooled or
// refused. The gates were never freed: a client sending records of ever
// new topic names while the spool is full (every record refused, 503)
// grew kproxy's memory without bound. A gate holding nothing is freed now;
// the one whose topic has a record in the spool is kept, and that record
// is drained once Kafka is back.
func TestSpoolGatesOfRefusedTopicsFreed(t *testing.T) {
	k := kafkatest.StartRestartable(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	k.Stop()
	const spoolMax = 1 << 20
	const maxMessage = spoolMax - 2000
	srv := spoolServer(t, nil, func(cfg *kproxy.Config) {
		cfg.BrokerHosts = []string{k.Addr()}
		cfg.Kafka.DialTimeoutMs = 200
		cfg.SpoolAfterMs = 20
		cfg.SpoolMaxBytes = spoolMax
		cfg.MaxMessageBytes = maxMessage
	})
	p := runProxy(t, srv)
	// All of the spool but 20 KB taken by one record of topic.
	big, _ := msgpack.Marshal(strings.Repeat("b", spoolMax-20_000))
	if a := p.post(t, "acks=1&topic="+topic+"&key=k", big); a.code != 202 {
		t.Fatalf("big record without kafka: %d %s, want 202 (spooled)", a.code, a.body)
	}
	// Then records of 1,000 other names that do not fit.
	large, _ := msgpack.Marshal(strings.Repeat("l", 30_000))
	const names = 1000
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				a := p.post(t, "acks=1&key=k&topic=other-"+strconv.Itoa(i), large)
				mu.Lock()
				codes[a.code]++
				mu.Unlock()
			}
		})
	}
	for i := range names {
		next <- i
	}
	close(next)
	wg.Wait()
	if codes[503] != names {
		t.Fatalf("records that do not fit in the spool: %v by status, want %d 503s", codes, names)
	}
	if n := kproxy.SpoolGates(srv); n > 300 {
		t.Errorf("%d spool gates kept after %d refused records of as many topics; want them freed (at most 300)", n, names)
	}

	k.Restart()
	spoolEmpty(t, p)
	if n := endOffsets(t, k.Cluster(), topic); n != 1 {
		t.Errorf("%d records of the drained topic in kafka, want the spooled one", n)
	}
}
