package kmonitor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// cluster follows one Kafka cluster: its ZooKeeper offsets and its brokers.
type cluster struct {
	name    string
	cfg     ClusterConfig
	poll    time.Duration
	log     *slog.Logger
	state   *state
	session time.Duration // the session timeout asked for

	zkMu        sync.Mutex
	conn        *zk.Conn      // the current client
	granted     time.Duration // the session timeout ZooKeeper granted last, 0 before the first session
	zkDownSince time.Time     // zero while a session is established; else the last contact before it was lost
	zkLostAt    time.Time     // when the connection was seen lost (zero with zkDownSince): the offsets held are as of then
	lastAnswer  time.Time     // when the last request ZooKeeper answered was sent (heartbeat)
	expired     bool          // the server expired the session, and no new one is established yet
	everUp      bool
	connErr     string // why the last client could not be made, as logged (run goroutine only)

	// everRead is set once a client has read every module, folder and
	// offset its first listings found: before that the partitions known
	// may be only some of them.
	everRead atomic.Bool
	// polledAfterRead is set once a poll that began after everRead has
	// had the brokers' answer for its topics' partitions: the
	// partitions of a topic whose offsets node records a count and that
	// have no offset znode are known from then on (state.unstored).
	polledAfterRead atomic.Bool
	// readWake (cap 1) has pollEnds poll at once when everRead is set: a
	// poll that began before it may not have asked for the topics read,
	// and the next tick can be poll_interval_ms away.
	readWake chan struct{}

	// missing is the path whose absence the last listing of
	// <chroot>/consumers met (the chroot itself, or consumers/ in it), ""
	// once it was found: nothing can be read then, and that is never
	// healthy (a misspelt chroot, the wrong ensemble).
	missingMu sync.Mutex
	missing   string

	// Used only by the poll goroutine.
	kafka       *kgo.Client
	adm         *kadm.Client       // over kafka
	brokers     []string           // kafka's seed brokers
	discovering chan discovery     // the reading of <chroot>/brokers/ids under way, if any
	discoverWG  sync.WaitGroup     // that reading's goroutine
	skipped     string             // the registrations the last reading left out, as logged
	unknown     map[partKey]string // partitions whose lag logUnknown logged unknown, by cause
	clientErr   string             // why the last poll had no Kafka client, as logged ("" when it had one)

	// The poll goroutine and its per-leader requests (pollLeader).
	pollMu     sync.Mutex
	inflight   map[topicPartition]bool  // partitions whose last request has not returned
	failed     map[int32]int            // noLeader: partitions whose log end the poll missed before any request
	missed     map[topicPartition]bool  // partitions whose log end the last request for them missed (pollLeader)
	leaders    map[topicPartition]int32 // as last learnt; used by the poll goroutine only
	metaCh     chan metaResult          // the metadata request under way, if any (poll goroutine)
	metaTopics []string                 // the topics it names
	metaWG     sync.WaitGroup           // that request's goroutine
	lastFailed int                      // their sum, as last logged
}

// noLeader keys the partitions failed before a request to their leader.
const noLeader = -2

func newCluster(name string, cfg ClusterConfig, base BaseConfig, log *slog.Logger) *cluster {
	session := time.Duration(cfg.ZKSessionTimeoutMs) * time.Millisecond
	return &cluster{
		name: name, cfg: cfg, log: log, session: session,
		poll:     time.Duration(base.PollIntervalMs) * time.Millisecond,
		state:    newState(time.Duration(base.HistoryMinutes)*time.Minute, 2*time.Duration(base.PollIntervalMs)*time.Millisecond+pollTimeout),
		readWake: make(chan struct{}, 1),
		inflight: map[topicPartition]bool{},
		failed:   map[int32]int{},
		missed:   map[topicPartition]bool{},
		leaders:  map[topicPartition]int32{},
		// Down until the first session: nothing is reported healthy before.
		zkDownSince: time.Now(),
	}
}

// connect opens a ZooKeeper client; it connects in the background. The
// wait for the digest authentication's answer ends with ctx.
func (c *cluster) connect(ctx context.Context) (*zk.Conn, <-chan zk.Event, error) {
	connectTimeout := time.Duration(c.cfg.ZKConnectTimeoutMs) * time.Millisecond
	dialer := func(network, address string, _ time.Duration) (net.Conn, error) {
		return net.DialTimeout(network, address, connectTimeout)
	}
	var self atomic.Pointer[zk.Conn] // the client the callback is of
	conn, events, err := zk.Connect(c.cfg.ZKHosts, c.session, zk.WithDialer(dialer), zk.WithLogger(zkLog{c.log}), zk.WithHostProvider(zklayout.HostProvider(c.log)),
		zk.WithEventCallback(func(ev zk.Event) { c.expiredSession(self.Load(), ev) }))
	self.Store(conn)
	if err != nil {
		return nil, nil, fmt.Errorf("zookeeper %v: %w", c.cfg.ZKHosts, err)
	}
	// Before the watchers use the client, so that the server sees the
	// credentials first. Closing the client on ctx ends the wait for an
	// answer (a server that does not answer would hold it for a session).
	stop := context.AfterFunc(ctx, conn.Close)
	defer stop()
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
	c.discoverWG.Wait() // its client is closed: it has returned or will at once
	c.metaWG.Wait()     // ended with ctx
	if c.kafka != nil {
		c.kafka.Close()
	}
}

// runClient runs one ZooKeeper client until ctx ends or the client has
// had no session for stuckAfter. Its offsets stay (as errors while
// ZooKeeper is away, see zkProblem); the next client reads them afresh
// and drops those it no longer finds.
func (c *cluster) runClient(ctx context.Context) {
	conn, events, err := c.connect(ctx)
	if err != nil && ctx.Err() != nil {
		return // stopping: the client was closed
	}
	if err != nil {
		if err.Error() != c.connErr { // when it changes, not at every retry
			c.log.Error("zookeeper client", "err", err)
			c.connErr = err.Error()
		}
		sleep(ctx, retryDelay)
		return
	}
	c.connErr = ""
	c.zkMu.Lock()
	c.conn = conn
	c.zkMu.Unlock()
	c.state.newEpoch()
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { c.followOffsets(cctx, conn) })
	stuck := make(chan struct{})
	wg.Go(func() { c.trackSession(cctx, conn, events, stuck) })
	wg.Go(func() { c.heartbeat(cctx, conn) })
	select {
	case <-ctx.Done():
	case <-stuck:
		c.log.Warn("no zookeeper session; replacing the client", "for", c.stuckAfter(), "zk_hosts", c.cfg.ZKHosts)
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

// sessionTimeout is the session timeout ZooKeeper granted (it bounds the
// one asked for to 2..20 of its ticks), the one asked for before the
// first session. zkMu is held.
func (c *cluster) sessionTimeout() time.Duration {
	if c.granted > 0 {
		return c.granted
	}
	return c.session
}

// stuckAfter is how long without a session before the ZooKeeper client is
// replaced: a client whose servers refuse it (an ensemble rebuilt from
// empty answers "seen a newer zxid" by hanging up) retries its old
// session forever.
func (c *cluster) stuckAfter() time.Duration {
	c.zkMu.Lock()
	defer c.zkMu.Unlock()
	return max(2*c.sessionTimeout(), 5*time.Second)
}

// trackSession follows the client's session state, and closes stuck when
// it has been without a session for stuckAfter.
func (c *cluster) trackSession(ctx context.Context, conn *zk.Conn, events <-chan zk.Event, stuck chan<- struct{}) {
	started := time.Now() // a new client gets stuckAfter of its own
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			c.sessionEvent(conn, ev)
		case <-check.C:
			c.reconcileSession(conn)
			c.zkMu.Lock()
			down := c.zkDownSince
			c.zkMu.Unlock()
			if !down.IsZero() && time.Since(later(down, started)) > c.stuckAfter() {
				close(stuck)
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// reconcileSession takes the client's session state as an event when it
// disagrees with the cluster's: the client drops an event when its
// channel (6 events) is full, which an expiry fills with one event per
// watch it clears, while the watchers it wakes take the CPU. The has
// session that ended an outage, dropped, left the cluster down — /health
// 503, every lag "zookeeper session expired" — until the client was
// replaced as stuck; a lost connection's, dropped, left it up.
func (c *cluster) reconcileSession(conn *zk.Conn) {
	state := conn.State()
	c.zkMu.Lock()
	up := c.zkDownSince.IsZero()
	c.zkMu.Unlock()
	switch state {
	case zk.StateHasSession:
		if !up {
			c.sessionEvent(conn, zk.Event{Type: zk.EventSession, State: state, Server: conn.Server()})
		}
	case zk.StateDisconnected, zk.StateConnecting, zk.StateExpired:
		if up {
			c.sessionEvent(conn, zk.Event{Type: zk.EventSession, State: state, Server: conn.Server()})
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (c *cluster) sessionEvent(conn *zk.Conn, ev zk.Event) {
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
		c.zkDownSince, c.zkLostAt, c.everUp, c.expired = time.Time{}, time.Time{}, true, false
		c.lastAnswer = time.Now()
		// Set before the event is sent: the server's answer.
		c.granted = conn.SessionTimeout()
	case zk.StateDisconnected, zk.StateExpired, zk.StateConnecting:
		if ev.State == zk.StateExpired {
			c.expired = true // the watches are gone: nothing held is known
		}
		if c.zkDownSince.IsZero() {
			// From the last contact: the client gives its connection up
			// 2/3 of the session after it, and the server expires the
			// session a session after it.
			c.zkDownSince = time.Now()
			c.zkLostAt = c.zkDownSince
			if !c.lastAnswer.IsZero() && c.lastAnswer.Before(c.zkDownSince) {
				c.zkDownSince = c.lastAnswer
			}
			c.log.Warn("zookeeper connection lost; reconnecting", "state", ev.State.String(),
				"last_answer", c.zkDownSince.Format(time.RFC3339Nano))
		}
	}
}

// expiredSession starts a new epoch of the offsets when the server says
// it expired the session: every watch is gone, and what was read in the
// session is not known until read again in the next one (snapshot shows it
// unknown; a listing drops what is no longer there). The client calls it
// from its own loop, before it ends the watches and before any request of
// the next session: a read made in that one is of the new epoch.
func (c *cluster) expiredSession(conn *zk.Conn, ev zk.Event) {
	// Only of the current client: a client closed may still complete a
	// handshake under way, and be told its session expired after the
	// next client began its epoch and read the offsets again, which
	// nothing would read again while they do not change.
	if ev.Type == zk.EventSession && ev.State == zk.StateExpired && conn != nil && c.zk() == conn {
		c.state.newEpoch()
	}
}

// heartbeat asks ZooKeeper a trivial question every sixth of the session
// until ctx ends, and notes when each answered one was sent: the last
// contact, from which an outage is dated (sessionEvent).
func (c *cluster) heartbeat(ctx context.Context, conn *zk.Conn) {
	for ctx.Err() == nil {
		sent := time.Now()
		_, _, err := conn.Exists("/")
		c.zkMu.Lock()
		if err == nil {
			c.lastAnswer = later(c.lastAnswer, sent)
		}
		every := c.sessionTimeout() / 6
		c.zkMu.Unlock()
		sleep(ctx, every)
	}
}

// lastContact is when ZooKeeper last answered and when the connection
// was seen lost, while it is (zero while connected): the offsets held are
// as of then (see lagFrom). Past the session, zkProblem serves every lag
// as unknown.
func (c *cluster) lastContact() lostConn {
	c.zkMu.Lock()
	defer c.zkMu.Unlock()
	return lostConn{answered: c.zkDownSince, seen: c.zkLostAt}
}

// zkProblem is the error every partition of the cluster shows when
// ZooKeeper has been unreachable for longer than a session (the one it
// granted: the server expires it then): the offsets kmonitor holds may be
// stale then.
func (c *cluster) zkProblem(now time.Time) string {
	c.zkMu.Lock()
	defer c.zkMu.Unlock()
	if c.zkDownSince.IsZero() {
		return ""
	}
	if c.expired {
		return "zookeeper session expired; offsets may be stale"
	}
	if d := now.Sub(c.zkDownSince); d > c.sessionTimeout() {
		if !c.everUp {
			return fmt.Sprintf("no zookeeper session for %s", d.Truncate(time.Second))
		}
		return fmt.Sprintf("zookeeper unreachable for %s; offsets may be stale", d.Truncate(time.Second))
	}
	return ""
}

// setMissing records the path the last listing of <chroot>/consumers
// found missing, "" when it was found, and logs when that changes: once,
// not at every retry. reason says what may be wrong.
func (c *cluster) setMissing(p, reason string) {
	c.missingMu.Lock()
	was := c.missing
	c.missing = p
	c.missingMu.Unlock()
	switch {
	case p == was:
		return
	case p != "":
		c.log.Warn("zookeeper path missing", "path", p, "reason", reason, "effect", "nothing to monitor; counted in kmonitor.errors until it is created")
	default:
		c.log.Info("zookeeper path found", "path", was)
	}
	c.state.gen.Add(1) // the errors count changes
}

// missingPath is the path whose absence keeps the cluster from being read
// (see setMissing), "" when there is none.
func (c *cluster) missingPath() string {
	c.missingMu.Lock()
	defer c.missingMu.Unlock()
	return c.missing
}

// everReached reports whether the cluster's partitions have been read
// once since the start (see everRead): before that only some of them, or
// none, are known.
// The partitions without an offset znode are known only once a poll has
// asked the brokers for the topics' partitions after that.
func (c *cluster) everReached() bool { return c.everRead.Load() && c.polledAfterRead.Load() }

// staleAfter is how long a log end (or an unstored partition's log start,
// or a topic the brokers said is not there) read by a poll is used: past
// it the partition's lag is an error.
func (c *cluster) staleAfter() time.Duration { return max(3*c.poll, c.poll+5*time.Second) }

// healthy reports whether the cluster holds a ZooKeeper session: one is
// established, or was and its connection was lost less than the session
// timeout since ZooKeeper last answered, and the server did not say it
// expired. The session lives on meanwhile, and so do the offsets read in
// it: zkProblem serves the lag as known for as long.
func (c *cluster) healthy() bool {
	c.zkMu.Lock()
	defer c.zkMu.Unlock()
	return c.zkDownSince.IsZero() || c.everUp && !c.expired && time.Since(c.zkDownSince) <= c.sessionTimeout()
}

func (c *cluster) pollEnds(ctx context.Context) {
	var leaders sync.WaitGroup // pollOnce's requests, one per leader
	defer leaders.Wait()
	t := time.NewTicker(c.poll)
	defer t.Stop()
	for {
		c.pollOnce(ctx, &leaders)
		c.logUnknown(time.Now())
		select {
		case <-t.C:
		case <-c.readWake:
		case <-ctx.Done():
			// A broker that does not answer its connection's first
			// request (ApiVersions) holds kgo's requests past their
			// context, for kgo's request timeout overhead (10 s):
			// closing the client ends them now, not after that wait.
			if c.kafka != nil {
				c.kafka.Close()
				c.kafka, c.adm = nil, nil
			}
			return
		}
	}
}

// logUnknown logs the partitions whose lag turned unknown, after a poll,
// for the causes nothing else logs (Lag.cause): once when the cause
// begins or changes, once when it ends (the partition known again, or
// gone), not at every poll. A cluster without ZooKeeper is logged as
// such, its partitions not: their causes are looked at again once it is
// back.
func (c *cluster) logUnknown(now time.Time) {
	if c.zkProblem(now) != "" || !c.everRead.Load() {
		// Nor during the first reading: a topic's claims are listed at
		// once, its offsets read one by one (followOffsets), and a
		// partition whose offset was not read yet shows as claimed
		// without one.
		return
	}
	lags := c.state.snapshot(c.name, now, c.staleAfter(), "", c.lastContact())
	cur := make(map[partKey]string, len(c.unknown))
	others := map[partKey]string{} // the partitions logUnknown logged, without such a cause now: their error, if any
	for _, l := range lags {
		k := partKey{l.Module, l.Topic, l.Partition}
		if l.undecided {
			if why, ok := c.unknown[k]; ok {
				cur[k] = why // as logged, until a poll decides
			}
			continue
		}
		if l.cause == "" {
			if _, ok := c.unknown[k]; ok {
				others[k] = l.Err
			}
			continue
		}
		cur[k] = l.cause
		if c.unknown[k] == l.cause {
			continue
		}
		level := slog.LevelWarn
		if l.cause == causeClaimed {
			level = slog.LevelInfo // a claim's first moments: ktransfer stores the start offset next
		}
		c.log.Log(context.Background(), level, "partition lag unknown", "module", l.Module, "topic", l.Topic, "partition", l.Partition, "reason", l.Err)
	}
	for k := range c.unknown {
		if _, ok := cur[k]; ok {
			continue
		}
		why, there := others[k]
		switch {
		case !there:
			// Its offset, its claim, or its topic's partitions in Kafka
			// are gone; or its folder can no longer be listed.
			c.log.Info("partition no longer monitored", "module", k.module, "topic", k.topic, "partition", k.name)
		case why == "":
			c.log.Info("partition lag known again", "module", k.module, "topic", k.topic, "partition", k.name)
		default:
			// Logged where it was found (log-end offsets not read, a bad
			// offset znode).
			c.log.Info("partition lag still unknown, for another reason", "module", k.module, "topic", k.topic, "partition", k.name, "reason", why)
		}
	}
	c.unknown = cur
}

// pollTimeout bounds one reading of the log-end offsets from one leader:
// kgo retries within it (a moved leader, a dropped connection), and past it
// the partitions not read keep their last log end until it turns stale.
const pollTimeout = 5 * time.Second

// metaWait bounds the wait for the partitions' leaders once some are known.
const metaWait = time.Second

// pollOnce reads the log-end offset of every partition an offset refers
// to: one ListOffsets request per leader broker (kgo re-routes a partition
// whose leader moved), each on its own, with its own timeout, its answer
// stamped when it arrives. A partition whose last request has not been
// answered is not asked for again until it is: a hung broker delays only
// the partitions it leads, which turn unknown once their log end is stale.
func (c *cluster) pollOnce(ctx context.Context, leaders *sync.WaitGroup) {
	// The metadata this poll asks for (or fails to) covers every count
	// read (watchCount is part of the first reading); not a late answer
	// to an earlier poll's request, which may not have named them all.
	afterRead, covered := c.everRead.Load(), true
	defer func() {
		if afterRead && covered {
			c.polledAfterRead.Store(true)
		}
	}()
	wanted := c.state.wanted()
	c.state.forget(wanted)
	if len(wanted) == 0 {
		c.setPollFailed(nil, 0, nil)
		return
	}
	_, err := c.kafkaClient()
	if err == nil && c.clientErr != "" {
		c.log.Info("kafka client available again")
		c.clientErr = ""
	}
	if err != nil {
		covered = false                 // no broker asked
		if err.Error() != c.clientErr { // when it changes, not every poll
			c.log.Warn("no kafka client", "err", err)
			c.clientErr = err.Error()
		}
		now := time.Now()
		for topic, parts := range wanted {
			for _, p := range parts {
				c.state.setEnd(topicPartition{topic, p}, 0, time.Time{}, err, now)
			}
		}
		return
	}
	// Leaders from kgo's cached metadata (topicMetadata: the brokers are
	// asked for what is missing or older than the client's
	// MetadataMinAge). The broker asked may hang (stopped,
	// behind a dead link): then the leaders last learnt are used, after
	// metaWait, so that the partitions the other brokers lead are read.
	// Waiting on an earlier poll's request, answered late or not, this
	// poll did not ask for the topics that request does not name: those
	// are read through the leaders last learnt, as when no answer came.
	meta, asked, err := c.metadata(ctx, c.kafka, slices.Sorted(maps.Keys(wanted)))
	if ctx.Err() != nil {
		return // shutting down: what was not read is not an error
	}
	var unasked map[string]bool
	for topic := range wanted {
		if _, ok := slices.BinarySearch(asked, topic); !ok {
			if unasked == nil {
				unasked = map[string]bool{}
			}
			unasked[topic] = true
		}
	}
	// Covered: every wanted topic named in this poll's request and
	// answered (a topic's own error, as an unauthorized topic's, is an
	// answer: asking again would not list it). A request that failed
	// lists nothing: what the first reading found would be served as the
	// whole list.
	covered = unasked == nil && err == nil
	if err == nil {
		maps.DeleteFunc(c.leaders, func(tp topicPartition, _ int32) bool { return !unasked[tp.topic] })
		for topic, td := range meta.Topics {
			for p, pd := range td.Partitions {
				c.leaders[topicPartition{topic, p}] = pd.Leader
			}
			switch {
			case td.Err == nil:
				c.state.setTopicID(topic, td.ID, time.Now())
				c.state.setParts(topic, int32(len(td.Partitions)), time.Now(), c.staleAfter())
			case errors.Is(td.Err, kerr.UnknownTopicOrPartition):
				c.state.setParts(topic, -1, time.Now(), c.staleAfter())
			}
		}
	}
	needStarts := c.state.needStarts()
	now := time.Now()
	byLeader := map[int32][]topicPartition{}
	failed := 0
	var firstErr error
	for topic, parts := range wanted {
		for _, p := range parts {
			tp := topicPartition{topic, p}
			var perr error
			td, ok := meta.Topics[topic]
			leader, cached := c.leaders[tp]
			switch {
			case (err != nil || unasked[topic]) && cached:
				byLeader[leader] = append(byLeader[leader], tp)
			case err != nil:
				perr = fmt.Errorf("metadata: %w", err)
			case unasked[topic]:
				perr = errors.New("metadata: not asked yet (an earlier poll's request was answered late)")
			case !ok:
				perr = errors.New("the brokers did not answer for the topic")
			case td.Err != nil:
				perr = fmt.Errorf("topic %s: %w", topic, td.Err)
			default:
				pd, ok := td.Partitions[p]
				if !ok {
					perr = fmt.Errorf("topic %s has no partition %d: %w", topic, p, kerr.UnknownTopicOrPartition)
				} else {
					byLeader[pd.Leader] = append(byLeader[pd.Leader], tp)
				}
			}
			if perr != nil {
				perr = fmt.Errorf("log end of %s/%d: %w", topic, p, perr)
				failed++
				firstErr = cmp.Or(firstErr, perr)
				c.state.setEnd(tp, 0, time.Time{}, perr, now)
			}
		}
	}
	c.setPollFailed(byLeader, failed, firstErr)
	client := c.kafka
	for leader, tps := range byLeader {
		// One request at a time per partition, so that answers are
		// applied in the order they were read (a log end never goes back).
		c.pollMu.Lock()
		tps = slices.DeleteFunc(tps, func(tp topicPartition) bool { return c.inflight[tp] })
		for _, tp := range tps {
			c.inflight[tp] = true
		}
		c.pollMu.Unlock()
		if len(tps) == 0 {
			continue
		}
		leaders.Go(func() {
			done := c.pollLeader(ctx, client, leader, tps, needStarts)
			c.pollMu.Lock()
			for _, tp := range tps {
				if !done[tp] {
					delete(c.inflight, tp)
				}
			}
			c.pollMu.Unlock()
		})
	}
}

// pollLeader reads the log-end offsets of tps, led by leader, then the
// log-start offsets of those of them in needStarts. It returns those it
// took out of c.inflight itself (read before the others came: asked for
// again by the next polls meanwhile).
func (c *cluster) pollLeader(ctx context.Context, client *kgo.Client, leader int32, tps []topicPartition, needStarts map[topicPartition]bool) (done map[topicPartition]bool) {
	lctx, cancel := context.WithTimeout(ctx, pollTimeout)
	defer cancel()
	type answer struct {
		end int64
		err error
	}
	answers := make(map[topicPartition]answer, len(tps))
	asked := time.Now() // the log ends read are no older
	// First straight to the leader: kgo would look the leaders up again
	// when its metadata is 5 s old, from any broker, and one that hangs on
	// every request would hold up the partitions the others lead. What
	// the leader does not answer with a log end (it leads them no more, or
	// is not known to the client) is asked again through kgo, which finds
	// the leaders (it refreshes the metadata and asks the new one).
	resp, err := client.Broker(int(leader)).Request(lctx, listOffsetsRequest(tps, -1))
	if r, ok := resp.(*kmsg.ListOffsetsResponse); err == nil && ok {
		for _, t := range r.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode == 0 {
					answers[topicPartition{t.Topic, p.Partition}] = answer{end: p.Offset}
				}
			}
		}
	}
	var again []topicPartition
	for _, tp := range tps {
		if _, ok := answers[tp]; !ok {
			again = append(again, tp)
		}
	}
	var early map[topicPartition]answer
	if len(again) > 0 && len(answers) > 0 && ctx.Err() == nil {
		// The leader's answers are stamped as they came, not once the
		// partitions it did not answer for were asked elsewhere: a slow
		// or hung new leader held them, read at once, for up to
		// pollTimeout and then stamped as just read (their age, and the
		// staleness check, behind by as much). And they are asked for
		// again by the next polls meanwhile (those without a log start
		// to read after them): left in flight, they went stale.
		now := time.Now()
		early = make(map[topicPartition]answer, len(answers))
		done = map[topicPartition]bool{}
		for _, tp := range tps {
			if a, ok := answers[tp]; ok {
				c.state.setEnd(tp, a.end, asked, nil, now)
				early[tp] = a
				if !needStarts[tp] {
					done[tp] = true
				}
			}
		}
		c.pollMu.Lock()
		for tp := range early {
			delete(c.missed, tp)
		}
		for tp := range done {
			delete(c.inflight, tp)
		}
		c.logFailedLocked(nil)
		c.pollMu.Unlock()
		answers = make(map[topicPartition]answer, len(again))
	}
	if len(again) > 0 && lctx.Err() == nil {
		listOffsetsSharded(lctx, client, again, -1, func(tp topicPartition, offset int64, err error) {
			answers[tp] = answer{end: offset, err: err}
		})
	} else if len(again) > 0 && err != nil {
		for _, tp := range again {
			answers[tp] = answer{err: fmt.Errorf("list offsets: %w", err)}
		}
	}
	if ctx.Err() != nil {
		return // shutting down: what was not read is not an error
	}
	now := time.Now()
	missed := map[topicPartition]bool{}
	var firstErr error
	for _, tp := range tps {
		if _, set := early[tp]; set {
			continue
		}
		a, ok := answers[tp]
		if !ok {
			a.err = errors.New("the brokers did not answer for the partition")
		}
		if a.err != nil {
			a.err = fmt.Errorf("log end of %s/%d: %w", tp.topic, tp.partition, a.err)
			missed[tp] = true
			firstErr = cmp.Or(firstErr, a.err)
			a.end = 0
		}
		c.state.setEnd(tp, a.end, asked, a.err, now)
	}
	// By partition, not by leader: a later poll's request to the same
	// leader, for the partitions it answered early, runs beside this one,
	// and its count would replace this one's (logged unknown, known again,
	// unknown, every poll).
	c.pollMu.Lock()
	for _, tp := range tps {
		if _, set := early[tp]; set {
			continue
		}
		if missed[tp] {
			c.missed[tp] = true
		} else {
			delete(c.missed, tp)
		}
	}
	c.logFailedLocked(firstErr)
	c.pollMu.Unlock()
	var starts []topicPartition
	for _, tp := range tps {
		if needStarts[tp] {
			starts = append(starts, tp)
		}
	}
	if len(starts) > 0 {
		c.pollStarts(lctx, client, starts)
	}
	return done
}

// pollStarts reads the log-start offsets of tps (partitions no process
// has started: their lag counts from there), through kgo, which finds
// their leaders. Read after their log ends: a start past the end read
// (retention meanwhile) counts as no lag.
func (c *cluster) pollStarts(ctx context.Context, client *kgo.Client, tps []topicPartition) {
	answers := make(map[topicPartition]startEntry, len(tps))
	asked := time.Now()
	listOffsetsSharded(ctx, client, tps, -2, func(tp topicPartition, offset int64, err error) {
		answers[tp] = startEntry{start: offset, err: err}
	})
	if ctx.Err() != nil && len(answers) == 0 {
		return // shutting down, or the leader's time is up: asked again next poll
	}
	for _, tp := range tps {
		a, ok := answers[tp]
		if !ok {
			a.err = errors.New("the brokers did not answer for the partition")
		}
		if a.err != nil {
			a.err = fmt.Errorf("log start of %s/%d: %w", tp.topic, tp.partition, a.err)
		}
		c.state.setStart(tp, a.start, a.err, asked, time.Now())
	}
}

// metaResult is the outcome of one metadata request.
type metaResult struct {
	meta kadm.Metadata
	err  error
}

// metadata asks for the leaders of topics, waiting at most metaWait once
// some leaders are known (pollTimeout before): kgo may send the request to
// a broker that hangs, and does not give up on it before pollTimeout. A
// request not answered by then goes on, and the next poll waits for it
// again (one at a time). asked is the topics of the request answered or
// waited on (sorted): the poll that sent it may have wanted fewer.
func (c *cluster) metadata(ctx context.Context, cl *kgo.Client, topics []string) (meta kadm.Metadata, asked []string, err error) {
	if c.metaCh == nil {
		ch := make(chan metaResult, 1)
		c.metaCh, c.metaTopics = ch, topics
		c.metaWG.Go(func() {
			mctx, cancel := context.WithTimeout(ctx, pollTimeout)
			defer cancel()
			meta, err := topicMetadata(mctx, cl, topics)
			ch <- metaResult{meta, err}
		})
	}
	wait := pollTimeout
	if len(c.leaders) > 0 {
		wait = metaWait
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case r := <-c.metaCh:
		c.metaCh = nil
		return r.meta, c.metaTopics, r.err
	case <-t.C:
		return kadm.Metadata{}, c.metaTopics, fmt.Errorf("no answer within %v", wait)
	case <-ctx.Done():
		return kadm.Metadata{}, nil, ctx.Err()
	}
}

// topicMetadata asks for topics' partitions and their leaders, through
// kgo's cached metadata as kadm's Metadata does, each topic with its own
// error. Not kadm's Metadata: a topic the brokers refuse to describe to
// kmonitor's principal (TOPIC_AUTHORIZATION_FAILED: another team's module
// in the chroot, a topic a module left) fails its whole answer, and every
// partition of the cluster showed unknown, the error naming no topic.
func topicMetadata(ctx context.Context, cl *kgo.Client, topics []string) (kadm.Metadata, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{} // none (not null: every topic) when topics is empty
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := cl.RequestCachedMetadata(ctx, req, 0)
	if err != nil {
		return kadm.Metadata{}, err
	}
	meta := kadm.Metadata{Topics: kadm.TopicDetails{}}
	for _, rt := range resp.Topics {
		if rt.Topic == nil {
			continue
		}
		td := kadm.TopicDetail{Topic: *rt.Topic, ID: rt.TopicID, Partitions: kadm.PartitionDetails{}, Err: kerr.ErrorForCode(rt.ErrorCode)}
		for _, rp := range rt.Partitions {
			td.Partitions[rp.Partition] = kadm.PartitionDetail{Topic: td.Topic, Partition: rp.Partition, Leader: rp.Leader,
				LeaderEpoch: rp.LeaderEpoch, Replicas: rp.Replicas, ISR: rp.ISR, OfflineReplicas: rp.OfflineReplicas, Err: kerr.ErrorForCode(rp.ErrorCode)}
		}
		meta.Topics[td.Topic] = td
	}
	return meta, nil
}

// listOffsetsSharded asks the leaders of tps, through kgo, for their
// offsets at timestamp (-1: log end, -2: log start) and calls got for
// each partition answered: with the offset, or with the error of the
// partition or of its leader's request. A partition got is not called for
// was not answered.
func listOffsetsSharded(ctx context.Context, client *kgo.Client, tps []topicPartition, timestamp int64, got func(tp topicPartition, offset int64, err error)) {
	for _, sh := range client.RequestSharded(ctx, listOffsetsRequest(tps, timestamp)) {
		if sh.Err != nil {
			if sreq, ok := sh.Req.(*kmsg.ListOffsetsRequest); ok {
				for _, t := range sreq.Topics {
					for _, p := range t.Partitions {
						got(topicPartition{t.Topic, p.Partition}, 0, fmt.Errorf("list offsets: %w", sh.Err))
					}
				}
			}
			continue
		}
		resp, ok := sh.Resp.(*kmsg.ListOffsetsResponse)
		if !ok {
			continue
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				got(topicPartition{t.Topic, p.Partition}, p.Offset, kerr.ErrorForCode(p.ErrorCode))
			}
		}
	}
}

// listOffsetsRequest asks for the offsets of tps at timestamp: -1 the log
// end, -2 the log start.
func listOffsetsRequest(tps []topicPartition, timestamp int64) *kmsg.ListOffsetsRequest {
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	index := map[string]int{}
	for _, tp := range tps {
		i, ok := index[tp.topic]
		if !ok {
			i = len(req.Topics)
			index[tp.topic] = i
			t := kmsg.NewListOffsetsRequestTopic()
			t.Topic = tp.topic
			req.Topics = append(req.Topics, t)
		}
		p := kmsg.NewListOffsetsRequestTopicPartition()
		p.Partition = tp.partition
		p.CurrentLeaderEpoch = -1
		p.Timestamp = timestamp
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, p)
	}
	return req
}

// setPollFailed records the poll's failures before any request (n under
// noLeader) and clears those counted for partitions no broker is asked for
// now (not in leaders): without a leader (counted under noLeader) or not
// watched any more, what their last read missed is not missing now. One
// change, logged once: a partition moving from one count to the other was
// logged as known again, then unknown (or the total doubled for a moment).
func (c *cluster) setPollFailed(leaders map[int32][]topicPartition, n int, firstErr error) {
	asked := map[topicPartition]bool{}
	for _, tps := range leaders {
		for _, tp := range tps {
			asked[tp] = true
		}
	}
	c.pollMu.Lock()
	defer c.pollMu.Unlock()
	for tp := range c.missed {
		if !asked[tp] {
			delete(c.missed, tp)
		}
	}
	if n == 0 {
		delete(c.failed, noLeader)
	} else {
		c.failed[noLeader] = n
	}
	c.logFailedLocked(firstErr)
}

// logFailedLocked logs when the count of partitions whose log end is
// missing changes (c.pollMu held), not every poll.
func (c *cluster) logFailedLocked(firstErr error) {
	total := len(c.missed)
	for _, f := range c.failed {
		total += f
	}
	if total == c.lastFailed {
		return
	}
	if total > c.lastFailed {
		c.log.Warn("log-end offsets unknown", "partitions", total, "first_err", firstErr)
	} else if total == 0 {
		c.log.Info("log-end offsets known again")
	}
	c.lastFailed = total
}

// kafkaClient returns a client for the cluster's current brokers:
// broker_hosts, or those registered under <chroot>/brokers/ids (read each
// poll, so brokers that come and go are followed). The brokers are its
// seeds; kgo learns the rest of the cluster and the leaders from them.
func (c *cluster) kafkaClient() (*kadm.Client, error) {
	brokers := c.cfg.BrokerHosts
	if len(brokers) == 0 {
		var found []string
		err := errors.New("no zookeeper client")
		if conn := c.zk(); conn != nil {
			found, err = c.discover(conn)
		}
		switch {
		case err != nil && c.adm != nil:
			return c.adm, nil // ZooKeeper is away; keep the brokers we know
		case err != nil:
			return nil, fmt.Errorf("discover brokers: %w", err)
		case len(found) == 0:
			return nil, fmt.Errorf("no broker registered under %s", zklayout.BrokerIDs(c.cfg.Chroot))
		}
		slices.Sort(found)
		brokers = found
	}
	if c.adm != nil && slices.Equal(brokers, c.brokers) {
		return c.adm, nil
	}
	if c.kafka != nil {
		c.kafka.Close()
		c.kafka, c.adm = nil, nil
	}
	opts, err := c.cfg.Kafka.Opts("kmonitor", brokers, c.log)
	if err != nil {
		return nil, err
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client for %v: %w", brokers, err)
	}
	c.log.Info("kafka brokers", "brokers", brokers)
	c.kafka, c.adm, c.brokers = client, kadm.NewClient(client), brokers
	return c.adm, nil
}

// discovery is the outcome of one reading of the brokers' registrations.
type discovery struct {
	brokers []string
	skipped error // registrations left out
	err     error
}

// discoverWait bounds how long a poll waits for ZooKeeper to list the
// brokers. A ZooKeeper that does not answer (a network partition) holds a
// request until the client gives up on its connection, two thirds of a
// session later: the log ends of the brokers already known would turn
// stale meanwhile.
const discoverWait = time.Second

// discover reads the brokers registered under <chroot>/brokers/ids,
// waiting at most discoverWait; a reading not answered by then goes on,
// and the next poll waits for it again (one at a time).
func (c *cluster) discover(conn *zk.Conn) ([]string, error) {
	if c.discovering == nil {
		ch := make(chan discovery, 1)
		c.discovering = ch
		c.discoverWG.Go(func() {
			found, skipped, err := zklayout.DiscoverBrokersFor(conn, c.cfg.Chroot, c.cfg.Kafka.SecurityProtocol())
			ch <- discovery{found, skipped, err}
		})
	}
	t := time.NewTimer(discoverWait)
	defer t.Stop()
	select {
	case d := <-c.discovering:
		c.discovering = nil
		skipped := ""
		if d.skipped != nil {
			skipped = d.skipped.Error()
		}
		if skipped != "" && skipped != c.skipped { // when it changes, not every poll
			c.log.Warn("broker registration skipped", "err", d.skipped)
		}
		c.skipped = skipped
		return d.brokers, d.err
	case <-t.C:
		return nil, fmt.Errorf("zookeeper did not answer within %v", discoverWait)
	}
}

// zkLog sends the ZooKeeper client's log to slog at debug level: it
// reports every reconnect attempt, which trackSession summarises.
type zkLog struct{ l *slog.Logger }

func (z zkLog) Printf(format string, args ...any) {
	z.l.Debug("zookeeper client", "line", fmt.Sprintf(format, args...))
}
