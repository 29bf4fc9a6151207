package kproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
)

// pending is one record on its way to Kafka. The request handler waits on
// done; the writer sends exactly one result to it.
type pending struct {
	msg       sarama.ProducerMessage // Topic, Key, Value; Partition and Offset once written
	buf       []byte                 // the record value: a copy of the request body
	key       []byte
	acks      int // index in acksLevels
	attempt   int
	lastErr   error
	done      chan error
	writeSize int
	rec       sarama.Record // its entry in a produce request
}

// recordKey presents a pending record's key to sarama's partitioner.
type recordKey pending

func (k *recordKey) Encode() ([]byte, error) { return k.key, nil }
func (k *recordKey) Length() int             { return len(k.key) }

var pendingPool = sync.Pool{New: func() any { return &pending{done: make(chan error, 1)} }}

// writerHooks are what a writer reports to the server.
type writerHooks struct {
	batchSize interface{ Observe(float64) } // records per produce request
	// lateRefusal reports acks=0 records the broker did not write, found
	// after they were answered 200 (acks=0 promises nothing more).
	lateRefusal func(topic string, partition int32, records int, err error)
}

// writer sends records to their partition leaders. Handlers queue records
// per leader and acks level; one goroutine per queue gathers whatever
// arrived while earlier requests were on the wire into the next produce
// request, up to max_message_bytes, with at most maxInFlight requests
// outstanding per queue. A record goes handler → queue → wire → the broker
// connection's reader → handler: three hand-offs. (sarama's AsyncProducer
// takes about eight and twice the CPU per record; see the README.)
type writer struct {
	client      sarama.Client
	version     int16
	timeoutMs   int32
	codec       sarama.CompressionCodec
	maxBatch    int
	maxInFlight int
	linger      time.Duration
	retries     int
	backoff     time.Duration
	fnv         bool
	murmur2     sarama.Partitioner // used only for keyed records: stateless then
	hooks       writerHooks

	mu     sync.Mutex
	queues map[queueKey]*queue
	closed bool

	outstanding atomic.Int64  // records accepted and not yet answered
	unconfirmed atomic.Int64  // acks=0 produce requests whose response has not come
	idle        chan struct{} // signalled when outstanding drops to 0 after close
	flushers    sync.WaitGroup
}

type queueKey struct {
	broker int32
	acks   int
}

func newWriter(cfg Config, hooks writerHooks) (*writer, error) {
	sc, err := saramaConfig(cfg)
	if err != nil {
		return nil, err
	}
	client, err := sarama.NewClient(cfg.BrokerHosts, sc)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %v: %w", cfg.BrokerHosts, err)
	}
	w := &writer{
		client:      client,
		version:     produceVersion(sc.Version),
		timeoutMs:   int32(cfg.ProduceTimeoutMs),
		codec:       codecs[cfg.Compression],
		maxBatch:    cfg.MaxMessageBytes,
		maxInFlight: cfg.MaxInFlightRequests,
		linger:      time.Duration(cfg.LingerMs) * time.Millisecond,
		retries:     3,
		backoff:     100 * time.Millisecond,
		fnv:         cfg.Partitioner == "fnv1a",
		murmur2:     sarama.NewMurmur2Partitioner(""),
		queues:      map[queueKey]*queue{},
		idle:        make(chan struct{}, 1),
		hooks:       hooks,
	}
	return w, nil
}

var codecs = map[string]sarama.CompressionCodec{
	"none": sarama.CompressionNone, "gzip": sarama.CompressionGZIP, "snappy": sarama.CompressionSnappy,
	"lz4": sarama.CompressionLZ4, "zstd": sarama.CompressionZSTD,
}

// produceVersion is the newest produce request version the configured
// Kafka version speaks (record batches from 0.11, version 3).
func produceVersion(v sarama.KafkaVersion) int16 {
	steps := []struct {
		v   sarama.KafkaVersion
		req int16
	}{
		{sarama.V3_7_0_0, 10}, {sarama.V2_8_0_0, 9}, {sarama.V2_4_0_0, 8}, {sarama.V2_1_0_0, 7},
		{sarama.V2_0_0_0, 6}, {sarama.V1_0_0_0, 5},
	}
	for _, s := range steps {
		if v.IsAtLeast(s.v) {
			return s.req
		}
	}
	return 3
}

var errClosing = sarama.ErrShuttingDown

// send routes p to its partition's leader. The result arrives on p.done.
func (w *writer) send(p *pending) {
	w.outstanding.Add(1)
	w.route(p)
}

func (w *writer) route(p *pending) {
	partition, leader, err := w.partitionFor(p)
	if err != nil {
		w.retry(p, err)
		return
	}
	p.msg.Partition = partition
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		w.finish(p, errClosing)
		return
	}
	k := queueKey{leader, p.acks}
	q := w.queues[k]
	if q == nil {
		q = &queue{w: w, key: k, kick: make(chan struct{}, 1), stop: make(chan struct{}), slots: make(chan struct{}, w.maxInFlight)}
		w.queues[k] = q
		w.flushers.Go(q.run)
	}
	w.mu.Unlock()
	q.add(p)
}

// partitionFor chooses the record's partition (the Java client's murmur2
// of the key, sarama's old fnv1a, or random without a key) and its leader.
func (w *writer) partitionFor(p *pending) (int32, int32, error) {
	topic := p.msg.Topic
	var parts []int32
	var err error
	if p.msg.Key == nil {
		// Keyless records go to a partition that has a leader.
		if parts, err = w.client.WritablePartitions(topic); err == nil && len(parts) == 0 {
			parts, err = w.client.Partitions(topic)
		}
	} else {
		parts, err = w.client.Partitions(topic)
	}
	if err != nil {
		return 0, 0, err
	}
	if len(parts) == 0 {
		return 0, 0, sarama.ErrLeaderNotAvailable
	}
	n := int32(len(parts))
	var i int32
	switch {
	case p.msg.Key == nil:
		i = rand.Int32N(n)
	case w.fnv:
		i = fnv1aPartition(p.key, n)
	default:
		if i, err = w.murmur2.Partition(&p.msg, n); err != nil {
			return 0, 0, err
		}
	}
	partition := parts[i]
	leader, err := w.client.Leader(topic, partition)
	if err != nil {
		return 0, 0, err
	}
	return partition, leader.ID(), nil
}

// fnv1aPartition routes as sarama's NewHashPartitioner did by default,
// which is how the 2015 suite placed keys.
func fnv1aPartition(key []byte, n int32) int32 {
	h := uint32(2166136261)
	for _, c := range key {
		h ^= uint32(c)
		h *= 16777619
	}
	p := int32(h) % n
	if p < 0 {
		p = -p
	}
	return p
}

// retryable says whether sending again may succeed. Each case is a state
// that changes by itself: leadership moves, metadata catches up, replicas
// return, connections are re-established.
func retryable(err error) bool {
	var kerr sarama.KError
	if errors.As(err, &kerr) {
		switch kerr {
		case sarama.ErrNotLeaderForPartition, sarama.ErrLeaderNotAvailable, sarama.ErrBrokerNotAvailable:
			return true // leadership is moving; metadata is refreshed before the retry
		case sarama.ErrUnknownTopicOrPartition:
			return true // a new topic's partitions are not on every broker yet
		case sarama.ErrNotEnoughReplicas, sarama.ErrNotEnoughReplicasAfterAppend:
			return true // replicas rejoin the ISR; after-append may duplicate, as in the Java client
		case sarama.ErrRequestTimedOut, sarama.ErrNetworkException:
			return true // may duplicate a record that was written: delivery is at-least-once
		}
		return false
	}
	var nerr net.Error
	return errors.Is(err, sarama.ErrNotConnected) || errors.Is(err, sarama.ErrOutOfBrokers) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.As(err, &nerr)
}

// retry sends p again after a backoff and a metadata refresh, or answers
// it with err when the error is final or the attempts are used up.
func (w *writer) retry(p *pending, err error) {
	if !retryable(err) || p.attempt >= w.retries {
		w.finish(p, err)
		return
	}
	p.attempt++
	p.lastErr = err
	time.AfterFunc(w.backoff<<(p.attempt-1), func() {
		_ = w.client.RefreshMetadata(p.msg.Topic)
		w.route(p)
	})
}

// finish answers p. It is called exactly once per record.
func (w *writer) finish(p *pending, err error) {
	p.done <- err
	if w.outstanding.Add(-1) == 0 {
		select {
		case w.idle <- struct{}{}:
		default:
		}
	}
}

// close lets the queued records go out and waits for their answers (and
// for the broker's responses to acks=0 requests) until ctx ends, then stops
// the queues and closes the client; records still queued then are answered
// "shutting down".
func (w *writer) close(ctx context.Context) error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	for w.outstanding.Load() > 0 || w.unconfirmed.Load() > 0 {
		select {
		case <-w.idle:
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
		if ctx.Err() != nil {
			break
		}
	}
	w.mu.Lock()
	for _, q := range w.queues {
		close(q.stop)
	}
	w.mu.Unlock()
	w.flushers.Wait()
	// Closing the client fails the requests still on the wire; their
	// callbacks answer the waiting handlers.
	if err := w.client.Close(); err != nil && !errors.Is(err, sarama.ErrClosedClient) {
		return err
	}
	return nil
}

// queue holds the records bound for one broker at one acks level.
type queue struct {
	w     *writer
	key   queueKey
	kick  chan struct{} // there are records to send
	stop  chan struct{}
	slots chan struct{} // one per produce request on the wire

	mu   sync.Mutex
	recs []*pending
}

func (q *queue) add(p *pending) {
	q.mu.Lock()
	q.recs = append(q.recs, p)
	q.mu.Unlock()
	q.wake()
}

func (q *queue) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// run sends the queue's records until stop; then it answers what is left.
func (q *queue) run() {
	for {
		select {
		case <-q.kick:
		case <-q.stop:
			q.mu.Lock()
			left := q.recs
			q.recs = nil
			q.mu.Unlock()
			for _, p := range left {
				q.w.finish(p, errClosing)
			}
			return
		}
		// Wait for a free slot; records keep gathering meanwhile, so a busy
		// broker gets fewer, larger requests.
		select {
		case q.slots <- struct{}{}:
		case <-q.stop:
			q.wake()
			continue
		}
		if q.w.linger > 0 {
			select { // let a batch fill (linger_ms)
			case <-time.After(q.w.linger):
			case <-q.stop:
			}
		}
		batch, more := q.take()
		if len(batch) == 0 {
			<-q.slots
			continue
		}
		q.flush(batch)
		if more {
			q.wake()
		}
	}
}

// take removes records from the head of the queue up to max_message_bytes
// in all, at least one; more reports whether records remain.
func (q *queue) take() ([]*pending, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	size, n := 0, 0
	for n < len(q.recs) {
		s := q.recs[n].writeSize
		if n > 0 && size+s > q.w.maxBatch {
			break
		}
		size += s
		n++
	}
	batch := make([]*pending, n)
	copy(batch, q.recs[:n])
	rest := copy(q.recs, q.recs[n:])
	clear(q.recs[rest:])
	q.recs = q.recs[:rest]
	return batch, rest > 0
}

// flush writes one produce request holding batch.
func (q *queue) flush(batch []*pending) {
	w := q.w
	broker, err := w.client.Broker(q.key.broker)
	if err != nil {
		<-q.slots
		w.retryAll(batch, err)
		return
	}
	if q.key.acks == 0 {
		q.flushNoAcks(broker, batch)
		return
	}
	req, groups := w.buildRequest(batch, acksLevels[q.key.acks])
	w.hooks.batchSize.Observe(float64(len(batch)))
	err = broker.AsyncProduce(req, func(resp *sarama.ProduceResponse, err error) {
		<-q.slots
		q.wake()
		w.answer(groups, resp, err)
	})
	if err != nil { // not written; no callback comes
		<-q.slots
		w.retryAll(batch, err)
	}
}

// flushNoAcks writes acks=0 records. Each is answered once its request is
// on the socket, which is all acks=0 promises. The request itself asks the
// leader to acknowledge it (acks=1), and the queue's slot is held until it
// does: without that pacing a request would leave for every record or two,
// costing the broker twice the CPU per record and kproxy a quarter fewer
// requests per second than acks=1 (measured). The response also tells of
// records the broker refused, which are logged and counted.
func (q *queue) flushNoAcks(broker *sarama.Broker, batch []*pending) {
	w := q.w
	req, groups := w.buildRequest(batch, sarama.WaitForLocal)
	w.hooks.batchSize.Observe(float64(len(batch)))
	// The records go back to their pool once answered: the response is
	// matched to the partitions by this list, not by the records.
	type part struct {
		topic     string
		partition int32
		records   int
	}
	parts := make([]part, len(groups))
	for i, g := range groups {
		parts[i] = part{g.topic, g.partition, len(g.recs)}
	}
	w.unconfirmed.Add(1)
	err := broker.AsyncProduce(req, func(resp *sarama.ProduceResponse, err error) {
		<-q.slots
		q.wake()
		for _, p := range parts {
			if _, perr := result(resp, err, p.topic, p.partition); perr != nil {
				w.hooks.lateRefusal(p.topic, p.partition, p.records, perr)
			}
		}
		w.unconfirmed.Add(-1)
	})
	if err != nil { // not written; no callback comes
		w.unconfirmed.Add(-1)
		<-q.slots
		w.retryAll(batch, err)
		return
	}
	for _, p := range batch {
		p.msg.Offset = -1
		w.finish(p, nil)
	}
}

// group is the records of one topic-partition in a request, in order.
type group struct {
	topic     string
	partition int32
	recs      []*pending
}

func (w *writer) buildRequest(batch []*pending, acks sarama.RequiredAcks) (*sarama.ProduceRequest, []*group) {
	req := &sarama.ProduceRequest{RequiredAcks: acks, Timeout: w.timeoutMs, Version: w.version}
	// A request holds few partitions: a linear search beats a map here.
	var groups []*group
	for _, p := range batch {
		var g *group
		for _, c := range groups {
			if c.partition == p.msg.Partition && c.topic == p.msg.Topic {
				g = c
				break
			}
		}
		if g == nil {
			g = &group{topic: p.msg.Topic, partition: p.msg.Partition}
			groups = append(groups, g)
		}
		g.recs = append(g.recs, p)
	}
	now := time.Now()
	for _, g := range groups {
		rb := &sarama.RecordBatch{
			Version: 2, Codec: w.codec, FirstTimestamp: now, MaxTimestamp: now,
			ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
			LastOffsetDelta: int32(len(g.recs) - 1),
			Records:         make([]*sarama.Record, len(g.recs)),
		}
		for i, p := range g.recs {
			p.rec = sarama.Record{OffsetDelta: int64(i), Value: p.buf}
			if p.msg.Key != nil {
				p.rec.Key = p.key
			}
			rb.Records[i] = &p.rec
		}
		req.AddBatch(g.topic, g.partition, rb)
	}
	return req, groups
}

// answer hands every record of a response its offset or error.
func (w *writer) answer(groups []*group, resp *sarama.ProduceResponse, err error) {
	for _, g := range groups {
		base, perr := result(resp, err, g.topic, g.partition)
		if perr != nil {
			w.retryAll(g.recs, perr)
			continue
		}
		for i, p := range g.recs {
			p.msg.Offset = base + int64(i)
			w.finish(p, nil)
		}
	}
}

// result is one partition's outcome in a produce response (err: the
// request's own error): the first record's offset, or why it failed.
func result(resp *sarama.ProduceResponse, err error, topic string, partition int32) (int64, error) {
	if err != nil {
		return 0, err
	}
	block := resp.GetBlock(topic, partition)
	switch {
	case block == nil:
		return 0, sarama.ErrIncompleteResponse
	case block.Err != sarama.ErrNoError:
		return 0, block.Err
	}
	return block.Offset, nil
}

func (w *writer) retryAll(recs []*pending, err error) {
	for _, p := range recs {
		w.retry(p, err)
	}
}
