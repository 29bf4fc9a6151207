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
	conn    *zk.Conn
	events  <-chan zk.Event
	state   *state
	session time.Duration
	wg      sync.WaitGroup

	zkMu        sync.Mutex
	zkDownSince time.Time // zero while a session is established
	everUp      bool

	// kafka is used only by the poll goroutine.
	kafka   sarama.Client
	brokers []string
}

func newCluster(name string, cfg ClusterConfig, base BaseConfig, log *slog.Logger) (*cluster, error) {
	connectTimeout := time.Duration(cfg.ZKConnectTimeoutMs) * time.Millisecond
	session := time.Duration(cfg.ZKSessionTimeoutMs) * time.Millisecond
	dialer := func(network, address string, _ time.Duration) (net.Conn, error) {
		return net.DialTimeout(network, address, connectTimeout)
	}
	conn, events, err := zk.Connect(cfg.ZKHosts, session, zk.WithDialer(dialer), zk.WithLogger(zkLog{log}))
	if err != nil {
		return nil, fmt.Errorf("cluster %s: zookeeper %v: %w", name, cfg.ZKHosts, err)
	}
	return &cluster{
		name: name, cfg: cfg, log: log, conn: conn, events: events, session: session,
		poll:  time.Duration(base.PollIntervalMs) * time.Millisecond,
		state: newState(time.Duration(base.HistoryMinutes) * time.Minute),
		// Down until the first session: nothing is reported healthy before.
		zkDownSince: time.Now(),
	}, nil
}

// run follows the cluster until ctx ends.
func (c *cluster) run(ctx context.Context) {
	c.wg.Go(c.trackSession)
	c.wg.Go(func() { c.followOffsets(ctx) })
	c.wg.Go(func() { c.pollEnds(ctx) })
	<-ctx.Done()
	// Shutdown order: 1. close the session, which ends the pending
	// ZooKeeper calls and the event stream; 2. wait for the goroutines;
	// 3. close the Kafka client the poller used.
	c.conn.Close()
	c.wg.Wait()
	if c.kafka != nil {
		_ = c.kafka.Close()
	}
}

func (c *cluster) trackSession() {
	for ev := range c.events {
		if ev.Type != zk.EventSession {
			continue
		}
		c.zkMu.Lock()
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
		c.zkMu.Unlock()
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
	failed := false
	for broker, r := range reqs {
		resp, err := broker.GetAvailableOffsets(r.req)
		for _, tp := range r.parts {
			end, perr := endOffset(resp, err, tp.topic, tp.partition)
			if perr != nil {
				failed = true
			}
			c.state.setEnd(tp, end, perr, now)
		}
		if err != nil {
			// Drop the connection: the next poll opens a new one.
			_ = broker.Close()
		}
	}
	if failed {
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
		found, err := zklayout.DiscoverBrokers(c.conn, c.cfg.Chroot)
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
