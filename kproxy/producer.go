package kproxy

import (
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// acksLevels are the per-request acks values, in producer-set order.
var acksLevels = [3]sarama.RequiredAcks{sarama.NoResponse, sarama.WaitForLocal, sarama.WaitForAll}

// acksIndex maps the acks query value to its producer set.
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

// pending is one record on its way to Kafka. The request handler waits on
// done; the dispatcher sends exactly one result to it.
type pending struct {
	msg  sarama.ProducerMessage
	buf  []byte // the record value: a copy of the request body
	key  []byte
	done chan error
}

var pendingPool = sync.Pool{New: func() any { return &pending{done: make(chan error, 1)} }}

// producer is one sarama client with its async producer at one acks level.
type producer struct {
	client     sarama.Client
	ap         sarama.AsyncProducer
	dispatched chan struct{} // closed when dispatch has delivered the last result
}

// producers holds producer_num producers for each acks level, and a
// separate client that answers "does this topic exist".
type producers struct {
	sets  [3][]*producer
	meta  sarama.Client
	next  atomic.Uint32
	check *topicCheck
}

func newProducers(cfg Config) (*producers, error) {
	ps := &producers{}
	metaCfg, err := saramaConfig(cfg, sarama.WaitForLocal)
	if err != nil {
		return nil, err
	}
	// One attempt: an unknown topic must answer 404 quickly, not after
	// the client's metadata retries.
	metaCfg.Metadata.Retry.Max = 0
	ps.meta, err = sarama.NewClient(cfg.BrokerHosts, metaCfg)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %v: %w", cfg.BrokerHosts, err)
	}
	ps.check = newTopicCheck(ps.meta)
	for i, acks := range acksLevels {
		sc, err := saramaConfig(cfg, acks)
		if err != nil {
			ps.close()
			return nil, err
		}
		for range cfg.ProducerNum {
			p, err := newProducer(cfg.BrokerHosts, sc)
			if err != nil {
				ps.close()
				return nil, err
			}
			ps.sets[i] = append(ps.sets[i], p)
		}
	}
	return ps, nil
}

func newProducer(brokers []string, sc *sarama.Config) (*producer, error) {
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %v: %w", brokers, err)
	}
	ap, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("start kafka producer: %w", err)
	}
	p := &producer{client: client, ap: ap, dispatched: make(chan struct{})}
	// The dispatcher lives as long as the producer: sarama blocks unless its
	// result channels are read. close() waits for it.
	go p.dispatch()
	return p, nil
}

func saramaConfig(cfg Config, acks sarama.RequiredAcks) (*sarama.Config, error) {
	sc, err := cfg.Kafka.Sarama("kproxy")
	if err != nil {
		return nil, err
	}
	sc.Metadata.AllowAutoTopicCreation = cfg.AutoCreateTopics
	sc.Producer.RequiredAcks = acks
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.Flush.Frequency = time.Duration(cfg.LingerMs) * time.Millisecond
	sc.Producer.MaxMessageBytes = cfg.MaxMessageBytes
	sc.Producer.Timeout = time.Duration(cfg.ProduceTimeoutMs) * time.Millisecond
	sc.ChannelBufferSize = min(cfg.ReqPoolSize, 4096)
	switch cfg.Partitioner {
	case "fnv1a":
		sc.Producer.Partitioner = sarama.NewHashPartitioner
	default:
		sc.Producer.Partitioner = sarama.NewMurmur2Partitioner
	}
	switch cfg.Compression {
	case "gzip":
		sc.Producer.Compression = sarama.CompressionGZIP
	case "snappy":
		sc.Producer.Compression = sarama.CompressionSnappy
	case "lz4":
		sc.Producer.Compression = sarama.CompressionLZ4
	case "zstd":
		sc.Producer.Compression = sarama.CompressionZSTD
	}
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("kafka client settings: %w", err)
	}
	return sc, nil
}

// pick chooses the producer for a record: by key, so that one key's
// records share a producer, else round robin.
func (ps *producers) pick(acks int, key []byte) *producer {
	set := ps.sets[acks]
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

// dispatch delivers every result of p to its waiting request, until the
// producer is closed. One goroutine per producer.
func (p *producer) dispatch() {
	defer close(p.dispatched)
	succ, errs := p.ap.Successes(), p.ap.Errors()
	for succ != nil || errs != nil {
		select {
		case m, ok := <-succ:
			if !ok {
				succ = nil
				continue
			}
			m.Metadata.(*pending).done <- nil
		case pe, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			pe.Msg.Metadata.(*pending).done <- pe.Err
		}
	}
}

// all returns every producer.
func (ps *producers) all() []*producer {
	var out []*producer
	for _, set := range ps.sets {
		out = append(out, set...)
	}
	return out
}

// close flushes and closes the producers, then their clients, then the
// metadata client. Results of records still buffered reach their waiters
// through the dispatchers, which end when the producers' channels close.
func (ps *producers) close() error {
	var errs []error
	// 1. Ask every producer to flush and stop. Not sarama's Close: it
	//    drains the result channels itself, stealing answers from waiters.
	for _, p := range ps.all() {
		p.ap.AsyncClose()
	}
	// 2. Wait until each dispatcher has handed out the last result (the
	//    producer closes its channels after its final flush), then close the
	//    producer's client.
	for _, p := range ps.all() {
		<-p.dispatched
		if err := p.client.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
			errs = append(errs, err)
		}
	}
	// 3. The metadata client last.
	if ps.meta != nil {
		if err := ps.meta.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
