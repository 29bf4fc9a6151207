package kproxy

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync/atomic"

	"github.com/IBM/sarama"
)

// acksLevels are the per-request acks values, in queue-set order.
var acksLevels = [3]sarama.RequiredAcks{sarama.NoResponse, sarama.WaitForLocal, sarama.WaitForAll}

// acksIndex maps the acks query value to its index in acksLevels.
func acksIndex(acks []byte) (int, bool) {
	switch string(acks) {
	case "0":
		return 0, true
	case "", "1":
		return 1, true
	case "-1", "all":
		return 2, true
	}
	return 0, false
}

// producers holds producer_num writers for acknowledged records (acks 1
// and -1) and as many for acks=0, each with its own Kafka client and broker
// connections. acks=0 traffic has connections of its own: a broker answers
// a connection's requests strictly in order, so acks=0 requests, answered
// to the HTTP client before the broker has written them, would otherwise
// sit in line with acknowledged records' requests.
type producers struct {
	acked  []*writer
	noAcks []*writer
	next   atomic.Uint32
	check  *topicCheck
}

func newProducers(cfg Config, hooks writerHooks) (*producers, error) {
	ps := &producers{}
	for range cfg.ProducerNum {
		for _, set := range []*[]*writer{&ps.acked, &ps.noAcks} {
			w, err := newWriter(cfg, hooks)
			if err != nil {
				ps.close(context.Background())
				return nil, err
			}
			*set = append(*set, w)
		}
	}
	ps.check = newTopicCheck(ps.acked[0].client)
	return ps, nil
}

func saramaConfig(cfg Config) (*sarama.Config, error) {
	sc, err := cfg.Kafka.Sarama("kproxy")
	if err != nil {
		return nil, err
	}
	sc.Metadata.AllowAutoTopicCreation = cfg.AutoCreateTopics
	// One attempt per metadata request: an unknown topic answers 404 at
	// once, and the writer retries sends on its own.
	sc.Metadata.Retry.Max = 0
	if !sc.Version.IsAtLeast(sarama.V0_11_0_0) {
		return nil, fmt.Errorf("kafka.version %s: kproxy needs Kafka 0.11.0 or newer (record batches)", sc.Version)
	}
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("kafka client settings: %w", err)
	}
	return sc, nil
}

// pick chooses the writer for a record: by key, so that one key's records
// share broker connections, else round robin.
func (ps *producers) pick(acks int, key []byte) *writer {
	set := ps.acked
	if acks == 0 {
		set = ps.noAcks
	}
	if len(set) == 1 {
		return set[0]
	}
	var n uint32
	if len(key) > 0 {
		h := fnv.New32a()
		h.Write(key)
		n = h.Sum32()
	} else {
		n = ps.next.Add(1)
	}
	return set[n%uint32(len(set))]
}

// close stops every writer: records already accepted are sent and answered
// until ctx ends; then the clients are closed.
func (ps *producers) close(ctx context.Context) error {
	var errs []error
	for _, w := range append(ps.acked, ps.noAcks...) {
		if err := w.close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// brokersKnown reports whether the metadata names at least one broker.
func (ps *producers) brokersKnown() bool { return len(ps.acked[0].client.Brokers()) > 0 }
