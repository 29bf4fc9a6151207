package kmonitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-zookeeper/zk"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// cluster follows one Kafka cluster: its ZooKeeper offsets and its brokers.
type cluster struct {
	name    string
	cfg     ClusterConfig
	poll    time.Duration
	log     *slog.Logger
	state   *state
	session time.Duration
	// stuckAfter is how long without a session before the ZooKeeper client
	// is replaced: a client whose servers refuse it (an ensemble rebuilt
	// from empty answers "seen a newer zxid" by hanging up) retries its old
	// session forever.
	stuckAfter time.Duration

	zkMu        sync.Mutex
	conn        *zk.Conn  // the current client
	zkDownSince time.Time // zero while a session is established
	everUp      bool

	// Used only by the poll goroutine.
	kafka      sarama.Client
	brokers    []string
	lastFailed int // partitions whose log end the last poll could not read
}

func newCluster(name string, cfg ClusterConfig, base BaseConfig, log *slog.Logger) *cluster {
	session := time.Duration(cfg.ZKSessionTimeoutMs) * time.Millisecond
	return &cluster{
		name: name, cfg: cfg, log: log, session: session,
		stuckAfter: max(2*session, 5*time.Second),
		poll:       time.Duration(base.PollIntervalMs) * time.Millisecond,
		state:      newState(time.Duration(base.HistoryMinutes) * time.Minute),
		// Down until the first session: nothing is reported healthy before.
		zkDownSince: time.Now(),
	}
}

// connect opens a ZooKeeper client; it connects in the background.
func (c *cluster) connect() (*zk.Conn, <-chan zk.Event, error) {
	connectTimeout := time.Duration(c.cfg.ZKConnectTimeoutMs) * time.Millisecond
	dialer := func(network, address string, _ time.Duration) (net.Conn, error) {
		return net.DialTimeout(network, address, connectTimeout)
	}
	conn, events, err := zk.Connect(c.cfg.ZKHosts, c.session, zk.WithDialer(dialer), zk.WithLogger(zkLog{c.log}))
	if err != nil {
		return nil, nil, fmt.Errorf("zookeeper %v: %w", c.cfg.ZKHosts, err)
	}
	// Before the watchers use the client, so that the server sees the
	// credentials first.
	if err := c.cfg.ZKAuth.Authenticate(conn, c.session); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("zookeeper %v: %w", c.cfg.ZKHosts, err)
	}
	return conn, events, nil
}

// zk returns the current ZooKeeper client, or nil between clients.
func (c *cluster) zk() *zk.Conn {
	c.zkMu.Lock()
	defer c.zkMu.Unlock()
	return c.conn
}

// run follows the cluster until ctx ends.
func (c *cluster) run(ctx context.Context) {
	var poller sync.WaitGroup
	poller.Go(func() { c.pollEnds(ctx) })
	for ctx.Err() == nil {
		c.runClient(ctx)
	}
	poller.Wait()
	if c.kafka != nil {
		_ = c.kafka.Close()
	}
}

// runClient runs one ZooKeeper client until ctx ends or the client has
// had no session for stuckAfter. Its offsets are dropped with it; the next
// client reads them afresh.
func (c *cluster) runClient(ctx context.Context) {
	conn, events, err := c.connect()
	if err != nil {
		c.log.Error("zookeeper client", "err", err)
		sleep(ctx, retryDelay)
		return
	}
	c.zkMu.Lock()
	c.conn = conn
	c.zkMu.Unlock()
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { c.followOffsets(cctx, conn) })
	stuck := make(chan struct{})
	wg.Go(func() { c.trackSession(cctx, events, stuck) })
	select {
	case <-ctx.Done():
	case <-stuck:
		c.log.Warn("no zookeeper session; replacing the client", "for", c.stuckAfter)
	}
	// Shutdown order: 1. stop the watchers (cancel) and close the client,
	// which ends its pending calls and its event stream; 2. wait for them.
	cancel()
	conn.Close()
	wg.Wait()
	c.zkMu.Lock()
	c.conn = nil
	c.zkMu.Unlock()
}

// trackSession follows the client's session state, and closes stuck when
// it has been without a session for stuckAfter.
func (c *cluster) trackSession(ctx context.Context, events <-chan zk.Event, stuck chan<- struct{}) {
	started := time.Now() // a new client gets stuckAfter of its own
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			c.sessionEvent(ev)
		case <-check.C:
			c.zkMu.Lock()
			down := c.zkDownSince
			c.zkMu.Unlock()
			if !down.IsZero() && time.Since(later(down, started)) > c.stuckAfter {
				close(stuck)
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (c *cluster) sessionEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	c.zkMu.Lock()
	defer c.zkMu.Unlock()
	switch ev.State {
	case zk.StateHasSession:
		if !c.zkDownSince.IsZero() {
			c.log.Info("zookeeper session established", "server", ev.Server)
		}
		c.zkDownSince, c.everUp = time.Time{}, true
	case zk.StateDisconnected, zk.StateExpired, zk.StateConnecting:
		if c.zkDownSince.IsZero() {
			c.zkDownSince = time.Now()
			c.log.Warn("zookeeper connection lost; reconnecting", "state", ev.State.String())
		}
	}
}

// zkProblem is the error every partition of the cluster shows when
// ZooKeeper has been unreachable for longer than a session: the offsets
// kmonitor holds may be stale then.
func (c *cluster) zkProblem(now time.Time) string {
	c.zkMu.Lock()
	defer c.zkMu.Unlock()
	if c.zkDownSince.IsZero() {
		return ""
	}
	if d := now.Sub(c.zkDownSince); d > c.session {
		if !c.everUp {
			return fmt.Sprintf("no zookeeper session for %s", d.Truncate(time.Second))
		}
		return fmt.Sprintf("zookeeper unreachable for %s; offsets may be stale", d.Truncate(time.Second))
	}
	return ""
}

// healthy reports whether a session is up.
func (c *cluster) healthy() bool {
	c.zkMu.Lock()
	defer c.zkMu.Unlock()
	return c.zkDownSince.IsZero()
}

func (c *cluster) pollEnds(ctx context.Context) {
	t := time.NewTicker(c.poll)
	defer t.Stop()
	for {
		c.pollOnce()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// pollOnce reads the log-end offset of every partition an offset refers
// to, with one ListOffsets request per leader broker.
func (c *cluster) pollOnce() {
	wanted := c.state.wanted()
	c.state.forget(wanted)
	if len(wanted) == 0 {
		return
	}
	now := time.Now()
	client, err := c.kafkaClient()
	if err != nil {
		c.log.Warn("no kafka client", "err", err)
		for topic, parts := range wanted {
			for _, p := range parts {
				c.state.setEnd(topicPartition{topic, p}, 0, err, now)
			}
		}
		return
	}
	failed := 0
	var firstErr error
	version := int16(0)
	if client.Config().Version.IsAtLeast(sarama.V0_10_1_0) {
		version = 1
	}
	type request struct {
		req   *sarama.OffsetRequest
		parts []topicPartition
	}
	reqs := map[*sarama.Broker]*request{}
	for topic, parts := range wanted {
		for _, p := range parts {
			tp := topicPartition{topic, p}
			leader, err := client.Leader(topic, p)
			if err != nil {
				failed++
				if firstErr == nil {
					firstErr = fmt.Errorf("leader of %s/%d: %w", topic, p, err)
				}
				c.state.setEnd(tp, 0, fmt.Errorf("leader of %s/%d: %w", topic, p, err), now)
				continue
			}
			r := reqs[leader]
			if r == nil {
				r = &request{req: &sarama.OffsetRequest{Version: version}}
				reqs[leader] = r
			}
			r.req.AddBlock(topic, p, sarama.OffsetNewest, 1)
			r.parts = append(r.parts, tp)
		}
	}
	for broker, r := range reqs {
		resp, err := broker.GetAvailableOffsets(r.req)
		for _, tp := range r.parts {
			end, perr := endOffset(resp, err, tp.topic, tp.partition)
			if perr != nil {
				failed++
				if firstErr == nil {
					firstErr = fmt.Errorf("%s/%d: %w", tp.topic, tp.partition, perr)
				}
			}
			c.state.setEnd(tp, end, perr, now)
		}
		if err != nil {
			// Drop the connection: the next poll opens a new one.
			_ = broker.Close()
		}
	}
	// Log when the number of unreadable partitions changes, not every poll.
	if failed != c.lastFailed {
		if failed > 0 {
			c.log.Warn("log-end offsets unknown", "partitions", failed, "first_err", firstErr)
		} else {
			c.log.Info("log-end offsets known again")
		}
		c.lastFailed = failed
	}
	if failed > 0 {
		topics := make([]string, 0, len(wanted))
		for t := range wanted {
			topics = append(topics, t)
		}
		_ = client.RefreshMetadata(topics...)
	}
}

func endOffset(resp *sarama.OffsetResponse, err error, topic string, p int32) (int64, error) {
	if err != nil {
		return 0, fmt.Errorf("list offsets: %w", err)
	}
	block := resp.GetBlock(topic, p)
	if block == nil {
		return 0, errors.New("broker did not answer for the partition")
	}
	if block.Err != sarama.ErrNoError {
		return 0, block.Err
	}
	if len(block.Offsets) > 0 && block.Offset == 0 { // version 0 answers a list
		return block.Offsets[0], nil
	}
	return block.Offset, nil
}

// kafkaClient returns a client for the cluster's current brokers:
// broker_hosts, or those registered under <chroot>/brokers/ids (read each
// poll, so brokers that come and go are followed).
func (c *cluster) kafkaClient() (sarama.Client, error) {
	brokers := c.cfg.BrokerHosts
	if len(brokers) == 0 {
		var found []string
		err := errors.New("no zookeeper client")
		if conn := c.zk(); conn != nil {
			found, err = zklayout.DiscoverBrokers(conn, c.cfg.Chroot)
		}
		switch {
		case err != nil && c.kafka != nil:
			return c.kafka, nil // ZooKeeper is away; keep the brokers we know
		case err != nil:
			return nil, fmt.Errorf("discover brokers: %w", err)
		case len(found) == 0:
			return nil, fmt.Errorf("no broker registered under %s", zklayout.BrokerIDs(c.cfg.Chroot))
		}
		slices.Sort(found)
		brokers = found
	}
	if c.kafka != nil && !c.kafka.Closed() && slices.Equal(brokers, c.brokers) {
		return c.kafka, nil
	}
	if c.kafka != nil {
		_ = c.kafka.Close()
		c.kafka = nil
	}
	sc, err := c.cfg.Kafka.Sarama("kmonitor")
	if err != nil {
		return nil, err
	}
	sc.Metadata.Retry.Max = 1
	sc.Net.ReadTimeout = 5 * time.Second
	sc.Net.WriteTimeout = 5 * time.Second
	client, err := sarama.NewClient(brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka %v: %w", brokers, err)
	}
	c.log.Info("kafka brokers", "brokers", brokers)
	c.kafka, c.brokers = client, brokers
	return client, nil
}

// zkLog sends the ZooKeeper client's log to slog at debug level: it
// reports every reconnect attempt, which trackSession summarises.
type zkLog struct{ l *slog.Logger }

func (z zkLog) Printf(format string, args ...any) {
	z.l.Debug("zookeeper client", "line", fmt.Sprintf(format, args...))
}
