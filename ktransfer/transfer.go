package ktransfer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/daemon"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/zklayout"
)

// kafkaTimeout bounds one metadata or offset request to Kafka.
const kafkaTimeout = 15 * time.Second

// deadLetterTimeout bounds one write to a dead-letter topic; a write that
// times out is logged and tried again.
const deadLetterTimeout = 30 * time.Second

// Transfer runs the enabled modules of one ktransfer process.
type Transfer struct {
	cfg     Config
	log     *slog.Logger
	zk      *zk.Conn
	metrics *metrics
	adminLn net.Listener
	admin   *http.Server

	// kafkaOpts are the shared client options (brokers, TLS, SASL, …);
	// each module reads with a client of its own built from them.
	kafkaOpts []kgo.Opt
	// brokersRef names the brokers and where they came from (broker_hosts
	// of the file, or ZooKeeper's brokers/ids), for a start-up error.
	brokersRef string
	// client serves the process: topic metadata and offsets (adm).
	client *kgo.Client
	adm    *kadm.Client
	// deadLetterClients write the dead letters, one per dead-letter topic
	// (deadLetterClient), under deadLetterMaxMu; none is made once
	// deadLetterClosed.
	deadLetterClients map[string]*kgo.Client
	deadLetterClosed  bool
	// deadLetterRetired counts each topic's clients retired: a limit
	// asked before a retire is not stored after it (deadLetterLimit).
	deadLetterRetired map[string]uint64
	// deadLetterWrites are the dead-letter writes in the clients, those
	// abandoned by a release included (module.writeDeadLetter); Close
	// waits for them once the clients are closed (they fail what they
	// hold).
	deadLetterWrites sync.WaitGroup
	// deadLetterMax is each dead-letter topic's max.message.bytes as the
	// brokers told it (deadLetterLimit), the bound of the batches the
	// topic's client writes there (deadLetterBatchMax).
	deadLetterMaxMu sync.Mutex
	// deadLetterSolo, per dead-letter topic: writes take it shared; a
	// write that decides a dead letter is refused for good takes it alone,
	// so that the refusal is of that record, not of a batch kgo made of
	// several (under deadLetterMaxMu).
	deadLetterSolo map[string]*sync.RWMutex
	deadLetterMax  map[string]int32
	// lastParts is each topic's partition list as last read, for the
	// fleet's reassignment while the brokers do not answer.
	lastPartsMu sync.Mutex
	lastParts   map[string][]int32
	// firstParts is each topic's partition list as first read by this
	// process (under lastPartsMu): a partition not in it was added while
	// the process ran (sinceModuleStart).
	firstParts map[string][]int32

	id       string // this instance, in ids/ and owners/
	started  time.Time
	zkEvents <-chan zk.Event
	zkMu     sync.Mutex // guards zk (replaced when stuck), zkEvents, zkUp and zkGen
	zkUp     bool       // a session is established and not given up on
	zkGen    uint64     // counts the sessions given up: a claim made in an older one does not start
	acl      []zk.ACL   // of the nodes this process creates (zk_auth.acl)

	// The session's health, from this process's own requests: when the
	// latest answered heartbeat was sent (ns since base, on the monotonic
	// clock: a wall clock stepped back must not keep a silent session
	// "fresh"; the server heard from the session no earlier), the session
	// it was answered in, and the session timeout the server granted (ms;
	// 0 until known).
	base        time.Time
	lastAnswer  atomic.Int64
	answeredSID atomic.Int64
	grantedMs   atomic.Int64
	// kafkaWaiting is when (ns since base, plus 1: 0 is none) the oldest
	// request to the brokers made since the last answer was made
	// (cutoff.go).
	kafkaWaiting atomic.Int64

	// modules are the running modules; a reload replaces the list.
	modulesMu sync.Mutex
	modules   []*module

	// Reloads (reload.go). reloadReq holds one request: a SIGHUP during a
	// reload queues one more. reloadMu makes reloads one at a time and
	// guards runner, setLevel and logLevel.
	reloadReq chan struct{}
	reloadMu  sync.Mutex
	runner    *runner // where Run runs the modules; nil when not running
	setLevel  func(logLevel int) bool
	logLevel  int // in effect
	confMu    sync.Mutex
	conf      ConfigStatus // guarded by confMu
	// cleanups are the modules stopped by reloads whose ZooKeeper nodes
	// may remain, by owners directory (nodeCleanup); guarded by confMu.
	cleanups map[string]*nodeCleanup

	// parkedWatches are, by fleet folder, the child watches of module
	// runs that stopped while theirs was set (watchDir): the ZooKeeper
	// client keeps a watch's channel until the folder changes, so the
	// next run of the module takes it over rather than setting one more.
	parkedMu      sync.Mutex
	parkedWatches map[string][]<-chan zk.Event

	closeOnce sync.Once
}

// New validates cfg, connects to ZooKeeper and Kafka and prepares the
// modules; nothing is read before Run.
func New(cfg Config, log *slog.Logger) (*Transfer, error) {
	return NewContext(context.Background(), cfg, log)
}

// NewContext is New, given up when ctx ends (a stop during start-up):
// waiting for the first ZooKeeper session takes up to zk_timeout_ms.
func NewContext(ctx context.Context, cfg Config, log *slog.Logger) (*Transfer, error) {
	if err := cfg.Validate("config"); err != nil {
		return nil, err
	}
	if len(cfg.Modules) == 0 {
		return nil, errors.New("no module loaded: use LoadConfig, which reads module_enabled's files")
	}
	for _, k := range cfg.Kafka.NoEffect("kafka") {
		log.Warn("config key has no effect", "file", cfg.file, "key", k.Key, "value", k.Value, "reason", k.Reason)
	}
	t := &Transfer{cfg: cfg, log: log, metrics: newMetrics(), id: instanceID(), started: time.Now(), zkUp: true,
		reloadReq: make(chan struct{}, 1), logLevel: cfg.LogLevel}
	t.base = time.Now()
	t.conf = ConfigStatus{File: cfg.file, Hash: cfg.hash, LoadedAt: t.started}
	t.metrics.reg.MustRegister(statusCollector{t.Status})
	ok := false
	defer func() {
		if !ok {
			t.Close()
		}
	}()
	var err error
	if t.acl, err = cfg.ZKAuth.NodeACL(); err != nil {
		return nil, err
	}
	if t.zk, t.zkEvents, err = connectZK(ctx, cfg, zkLog{log, &t.grantedMs}); err != nil {
		return nil, err
	}
	t.answeredSID.Store(t.zk.SessionID())
	brokers := cfg.BrokerHosts
	t.brokersRef = fmt.Sprintf("broker_hosts %v", brokers)
	if cfg.file != "" {
		t.brokersRef = cfg.file + ": " + t.brokersRef
	}
	if len(brokers) == 0 {
		if brokers, err = discoverBrokers(ctx, t.zk, cfg, log); err != nil {
			return nil, err
		}
		t.brokersRef = fmt.Sprintf("brokers %v, read from %s", brokers, zklayout.BrokerIDs(cfg.ZKChroot))
	}
	if t.kafkaOpts, err = cfg.Kafka.Opts("ktransfer", brokers, log); err != nil {
		return nil, err
	}
	t.kafkaOpts = append(t.kafkaOpts, kgo.WithHooks(kafkaHeard{t}))
	if t.client, err = kgo.NewClient(t.kafkaOpts...); err != nil {
		return nil, fmt.Errorf("kafka client for %v: %w", brokers, err)
	}
	t.adm = kadm.NewClient(t.client)
	for _, mc := range cfg.Modules {
		m, err := newModule(mc, t)
		if err != nil {
			return nil, err
		}
		m.bindMetrics()
		t.modules = append(t.modules, m)
	}
	if cfg.AdminAddr != "" {
		if t.adminLn, err = listenAdmin(cfg, log); err != nil {
			return nil, err
		}
		t.admin = daemon.AdminServer(t.adminMux())
	}
	ok = true
	return t, nil
}

// listenAdmin opens the admin listener. When admin_addr is the default
// (the file does not set it) and its port is taken — another process of
// the fleet on this host has it — a free port on the same host is used
// instead; the address is logged and published in the ids/ registration.
// An admin_addr the file sets must be free.
func listenAdmin(cfg Config, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err == nil {
		return ln, nil
	}
	if cfg.adminAddrDefault && errors.Is(err, syscall.EADDRINUSE) {
		host, _, _ := net.SplitHostPort(cfg.AdminAddr) // valid: checked by Validate
		if ln, ferr := net.Listen("tcp", net.JoinHostPort(host, "0")); ferr == nil {
			log.Warn("admin port taken; using a free one", "admin_addr", cfg.AdminAddr, "using", ln.Addr().String())
			return ln, nil
		}
	}
	if cfg.file != "" {
		return nil, fmt.Errorf("%s: listen on %s (admin_addr): %w", cfg.file, cfg.AdminAddr, err)
	}
	return nil, fmt.Errorf("listen on %s (admin_addr): %w", cfg.AdminAddr, err)
}

// registration is this instance's ids/ node data: the classic fields, and
// the admin listener's address when it is on.
func (t *Transfer) registration() map[string]any {
	host, _ := os.Hostname()
	r := map[string]any{"host": host, "pid": os.Getpid(), "version": Version, "started": t.started.UnixMilli()}
	if a := t.AdminAddr(); a != nil {
		r["admin"] = a.String()
	}
	return r
}

// connectZK opens a session and waits for it, zk_timeout_ms at most, or
// until ctx ends. The returned events continue the session's story;
// watchSession reads them.
func connectZK(ctx context.Context, cfg Config, log zkLog) (*zk.Conn, <-chan zk.Event, error) {
	timeout := time.Duration(cfg.ZKTimeoutMs) * time.Millisecond
	conn, events, err := zk.Connect(cfg.ZKHosts, timeout, zk.WithLogger(log), zk.WithHostProvider(zklayout.HostProvider(log.l)))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", cfg.zkHostsRef(), err)
	}
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				if err := cfg.ZKAuth.AuthenticateContext(ctx, conn, timeout); err != nil {
					conn.Close()
					return nil, nil, err
				}
				return conn, events, nil
			}
		case <-deadline:
			conn.Close()
			return nil, nil, fmt.Errorf("%s: no ZooKeeper session within zk_timeout_ms (%v)", cfg.zkHostsRef(), timeout)
		case <-ctx.Done():
			conn.Close()
			return nil, nil, fmt.Errorf("%s: no ZooKeeper session yet: %w", cfg.zkHostsRef(), context.Cause(ctx))
		}
	}
}

// zkHostsRef names zk_hosts and its value, after the file that set it
// (none for a configuration built in code), for a start-up error.
func (c Config) zkHostsRef() string {
	ref := fmt.Sprintf("zk_hosts %v", c.ZKHosts)
	if c.file != "" {
		ref = c.file + ": " + ref
	}
	return ref
}

// conn returns the current ZooKeeper client.
func (t *Transfer) conn() *zk.Conn {
	t.zkMu.Lock()
	defer t.zkMu.Unlock()
	return t.zk
}

// parkWatch keeps ev, a set watch of dir that its run no longer waits on,
// for the next run watching dir (takeWatch).
func (t *Transfer) parkWatch(dir string, ev <-chan zk.Event) {
	t.parkedMu.Lock()
	defer t.parkedMu.Unlock()
	if t.parkedWatches == nil {
		t.parkedWatches = map[string][]<-chan zk.Event{}
	}
	t.parkedWatches[dir] = append(t.parkedWatches[dir], ev)
}

// takeWatch gives a watch of dir parked by an earlier run, or nil. It
// tells of every change of dir since it was set, or that it ended (its
// session or client gone): a change made while no run watched is not
// missed.
func (t *Transfer) takeWatch(dir string) <-chan zk.Event {
	t.parkedMu.Lock()
	defer t.parkedMu.Unlock()
	parked := t.parkedWatches[dir]
	if len(parked) == 0 {
		return nil
	}
	ev := parked[len(parked)-1]
	if len(parked) == 1 {
		delete(t.parkedWatches, dir)
	} else {
		t.parkedWatches[dir] = parked[:len(parked)-1]
	}
	return ev
}

// sessionUp reports whether this process may hold partitions.
func (t *Transfer) sessionUp() bool {
	_, up := t.session()
	return up
}

// session returns the session generation and whether it is up.
func (t *Transfer) session() (gen uint64, up bool) {
	t.zkMu.Lock()
	defer t.zkMu.Unlock()
	return t.zkGen, t.zkUp
}

// sessionTimeout is the session timeout the server granted, or
// zk_timeout_ms until one was granted.
func (t *Transfer) sessionTimeout() time.Duration {
	if ms := t.grantedMs.Load(); ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return time.Duration(t.cfg.ZKTimeoutMs) * time.Millisecond
}

// grace is how long this process may go without an answer from ZooKeeper
// before it stops every partition: 2/3 of the session timeout, counted
// from the sending of the last answered request. The server expires the
// session (and another process may claim the partitions) no earlier than
// the whole timeout after it last heard from it, which is after that.
func (t *Transfer) grace() time.Duration { return t.sessionTimeout() * 2 / 3 }

// fresh reports whether ZooKeeper answered within the grace.
func (t *Transfer) fresh() bool {
	return t.now()-t.lastAnswer.Load() < int64(t.grace())
}

// now is the monotonic time since the process's base, in ns.
func (t *Transfer) now() int64 { return int64(time.Since(t.base)) }

// heartbeat asks ZooKeeper a trivial question every grace/4 and notes when
// each answered one was sent, until ctx ends. The question is a sync,
// which the server passes to the ensemble's leader: a server cut off from
// the leader answers reads from its own copy (and pings) until it notices,
// syncLimit ticks later (10 s with ZooKeeper's sample zoo.cfg), while the
// leader expires the session after its timeout and another process takes
// the partitions: answered a plain read, the heartbeat kept this process
// pushing them meanwhile.
func (t *Transfer) heartbeat(ctx context.Context) {
	for ctx.Err() == nil {
		sent := t.now()
		conn := t.conn()
		if _, err := conn.Sync("/"); err == nil {
			t.answeredSID.Store(conn.SessionID())
			t.lastAnswer.Store(max(t.lastAnswer.Load(), sent))
		}
		sleep(ctx, t.grace()/4)
	}
}

// events returns the current client's session events.
func (t *Transfer) events() <-chan zk.Event {
	t.zkMu.Lock()
	defer t.zkMu.Unlock()
	return t.zkEvents
}

// replaceClient closes the ZooKeeper client and opens a new one; it
// connects in the background, and its first session wakes the modules.
func (t *Transfer) replaceClient() error {
	if f := replaceFault.Load(); f != nil {
		(*f)()
	}
	timeout := time.Duration(t.cfg.ZKTimeoutMs) * time.Millisecond
	conn, events, err := zk.Connect(t.cfg.ZKHosts, timeout, zk.WithLogger(zkLog{t.log, &t.grantedMs}), zk.WithHostProvider(zklayout.HostProvider(t.log)))
	if err != nil {
		return err
	}
	if t.cfg.ZKAuth.Enabled() {
		// Sent as the client connects; the modules wait for its session
		// event. A request that reaches the server before it fails with
		// "not authenticated" and is retried like any ZooKeeper error.
		go func() {
			if err := t.cfg.ZKAuth.Authenticate(conn, 10*timeout); err != nil && !errors.Is(err, zk.ErrConnectionClosed) {
				t.log.Error("zookeeper authentication on the new client", "err", err)
			}
		}()
	}
	t.zkMu.Lock()
	old := t.zk
	t.zk, t.zkEvents = conn, events
	t.zkMu.Unlock()
	old.Close()
	t.log.Warn("replaced the zookeeper client")
	return nil
}

// replaceFault, when a test sets it, runs at the start of each client
// replacement (replaceClient), and may wait.
var replaceFault atomic.Pointer[func()]

// watchSession follows the ZooKeeper session from this process's own
// heartbeats, not from the client's events (late by 2/3 of the timeout,
// and lost when the client's small event buffer is full). Without an
// answer for the grace, or when the session changed (the old one expired
// and its ephemeral nodes are gone), every partition stops at once: past
// the timeout another process may claim them, and two processes must
// never push one partition. When answers come again the modules register
// and claim again. A client that gets no session for two session timeouts
// (an ensemble rebuilt from empty refuses its old session for ever) is
// replaced.
func (t *Transfer) watchSession(ctx context.Context) {
	sid := t.answeredSID.Load()
	replaced := time.Now()
	check := time.NewTicker(max(t.grace()/10, 10*time.Millisecond))
	defer check.Stop()
	for {
		select {
		case <-check.C:
		case ev, ok := <-t.events():
			if ctx.Err() != nil {
				return
			}
			switch {
			case ok && ev.Type == zk.EventSession && ev.State == zk.StateExpired:
				t.giveUp("session expired")
			case ok && ev.Type == zk.EventSession && ev.State == zk.StateDisconnected:
				// Told for the operator; the partitions stop on the
				// heartbeats' silence, not on this event.
				t.log.Warn("zookeeper disconnected; partitions stop unless it answers within 2/3 of the session timeout of its last answer",
					"silent", time.Duration(t.now()-t.lastAnswer.Load()).Round(time.Millisecond), "session_timeout", t.sessionTimeout())
			}
			if !ok {
				t.giveUp("zookeeper client closed")
				sleep(ctx, 10*time.Millisecond) // until replaceClient's new one, or the end
			}
			continue
		case <-ctx.Done():
			return
		}
		up := t.sessionUp()
		silent := time.Duration(t.now() - t.lastAnswer.Load())
		now := t.answeredSID.Load()
		switch {
		case up && now != sid:
			t.giveUp("the session changed: the old one expired")
		case up && silent >= t.grace():
			t.giveUp(fmt.Sprintf("no answer from zookeeper for %v (2/3 of the session timeout %v)", silent.Round(time.Millisecond), t.sessionTimeout()))
		case !up && silent < t.grace() && t.conn().State() == zk.StateHasSession:
			sid = now
			t.zkMu.Lock()
			t.zkUp = true
			t.zkMu.Unlock()
			t.log.Info("zookeeper answers again; rejoining", "session", fmt.Sprintf("%#x", sid))
			for _, m := range t.liveModules() {
				m.wake()
			}
			t.wakeCleanups()
		}
		if silent > 2*t.sessionTimeout() && time.Since(replaced) > 2*t.sessionTimeout() {
			if err := t.replaceClient(); err != nil {
				t.log.Warn("new zookeeper client", "err", err)
			}
			replaced = time.Now()
		}
	}
}

// giveUp stops every partition of every module at once, without waiting
// and without ZooKeeper.
func (t *Transfer) giveUp(why string) {
	t.zkMu.Lock()
	was := t.zkUp
	t.zkUp = false
	if was {
		t.zkGen++
	}
	t.zkMu.Unlock()
	if was {
		t.log.Error("zookeeper session lost; stopping every partition", "why", why)
		for _, m := range t.liveModules() {
			m.dropAll()
		}
	}
}

// ZKServer is the ZooKeeper server the session is connected to.
func (t *Transfer) ZKServer() string { return t.conn().Server() }

// ID is this instance's name in ids/ and owners/.
func (t *Transfer) ID() string { return t.id }

// AdminAddr is the admin listener's address, or nil.
func (t *Transfer) AdminAddr() net.Addr {
	if t.adminLn == nil {
		return nil
	}
	return t.adminLn.Addr()
}

// Run pushes until ctx ends or a module fails, then shuts down in order.
func (t *Transfer) Run(ctx context.Context) error {
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	pushCtx, stopPushing := context.WithCancel(context.Background())
	defer stopPushing()
	if t.admin != nil {
		go func() { _ = t.admin.Serve(t.adminLn) }()
	}
	for _, m := range t.liveModules() {
		if _, err := t.partitions(ctx, m.cfg.Topic); err != nil {
			if ctx.Err() != nil { // stopped while starting: not a failure
				t.log.Info("stopped while starting", "err", err)
				return t.Close()
			}
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				// Modules do not affect each other: this one waits for
				// its topic (coordinate says so), the others run.
				m.topicMissing(time.Now())
				continue
			}
			ref := "module " + m.cfg.Name
			if m.cfg.File != "" {
				ref = m.cfg.File + ": " + ref
			}
			return fmt.Errorf("%s: %w (%s)", ref, err, t.brokersRef)
		}
	}
	sessionCtx, stopSession := context.WithCancel(context.Background())
	// The watcher may replace the client: waited for before Close, which
	// closes the client in use; the heartbeat, on a frozen connection, is
	// answered by Close.
	var heartbeat, watcher sync.WaitGroup
	defer func() {
		stopSession()
		watcher.Wait()
		heartbeat.Wait()
	}()
	heartbeat.Go(func() { t.heartbeat(sessionCtx) })
	watcher.Go(func() { t.watchSession(sessionCtx) })
	r := &runner{readCtx: readCtx, pushCtx: pushCtx, errc: make(chan error, 1), running: map[*module]*moduleRun{}}
	t.reloadMu.Lock()
	for _, m := range t.liveModules() {
		r.start(m)
	}
	t.runner = r
	t.reloadMu.Unlock()
	var reloads sync.WaitGroup
	reloads.Go(func() { t.reloadLoop(readCtx) })
	t.log.Info("ktransfer running", "modules", len(t.liveModules()), "instance", t.id)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-r.errc:
	}
	// Shutdown order: 1. stop reading; a reload in progress ends, bounded
	// as below, and none starts any more; 2. let in-flight pushes finish,
	// bounded by shutdown_timeout_ms, after which retries are cut short
	// (those records stay uncommitted); 3. every module commits and deletes
	// its owner nodes (in module.run): the partitions move at once; 4. close
	// Kafka, then ZooKeeper, which removes the ids/ registration (Close).
	t.log.Info("shutting down")
	stopReading()
	// One deadline for the whole stop: a reload handing a module over
	// waits no longer than its own, started earlier.
	deadline := time.Now().Add(time.Duration(t.cfg.ShutdownTimeoutMs) * time.Millisecond)
	reloads.Wait()
	t.reloadMu.Lock()
	t.runner = nil
	t.reloadMu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	t.awaitStop(done, stopPushing, deadline)
	stopSession() // closing the client is not a lost session
	watcher.Wait()
	if err := t.Close(); err != nil && runErr == nil {
		runErr = err
	}
	t.log.Info("stopped")
	return runErr
}

// awaitStop waits for done, closed when modules whose reading was stopped
// have handed their partitions over: until deadline (shutdown_timeout_ms
// after the stop began) for the pushes in flight, after which retries are
// cut short (stopPushing; those records stay uncommitted), then until two
// session timeouts and 2 s after deadline. That end is fixed by deadline,
// not by when this wait began: a stop that first waited for a reload's
// hand-over (an earlier deadline) waits no longer than one without it. It
// reports whether done was closed.
func (t *Transfer) awaitStop(done <-chan struct{}, stopPushing func(), deadline time.Time) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
		return true
	case <-timer.C:
		t.log.Warn("in-flight pushes still running at shutdown_timeout_ms; cutting them short")
		stopPushing()
		// A ZooKeeper call on a frozen connection lasts until the client
		// gives up on it: bounded here, the rest is cut short by Close.
		select {
		case <-done:
			return true
		case <-time.After(time.Until(deadline.Add(2*t.sessionTimeout() + 2*time.Second))):
			t.log.Error("modules still stopping (ZooKeeper not answering); going on without them")
			return false
		}
	}
}

// liveModules is the running modules, in module_enabled's order.
func (t *Transfer) liveModules() []*module {
	t.modulesMu.Lock()
	defer t.modulesMu.Unlock()
	return slices.Clone(t.modules)
}

// Close releases what New acquired; idempotent.
func (t *Transfer) Close() error {
	var errs []error
	t.closeOnce.Do(func() {
		if t.admin != nil {
			daemon.StopHTTP(t.admin, time.Second)
		}
		if t.adminLn != nil {
			t.adminLn.Close()
		}
		// Dead letters are written synchronously: nothing is buffered
		// but the writes a release abandoned, which the close fails
		// (their records were left uncommitted).
		for _, m := range t.liveModules() {
			m.reader.cl.Close()
		}
		t.closeDeadLetterClients()
		if t.client != nil {
			t.client.Close()
		}
		t.deadLetterWrites.Wait()
		if conn := t.conn(); conn != nil {
			conn.Close()
		}
	})
	return errors.Join(errs...)
}

func (t *Transfer) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(t.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(StatusReport{Config: t.ConfigStatus(), Modules: t.Status()})
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		// The process's own view first: after it gave the session up (its
		// partitions stopped) a client that is connected again is not
		// enough, until the session watcher has taken the session back.
		if !t.sessionUp() || t.conn().State() != zk.StateHasSession {
			http.Error(w, "no zookeeper session", http.StatusServiceUnavailable)
			return
		}
		if waited, cut := t.kafkaCutOff(); cut {
			http.Error(w, "no kafka broker answered for "+waited.Round(time.Second).String()+
				" (kafka_cutoff_ms): the partitions are left to the other processes", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	daemon.HandlePprof(mux)
	return mux
}

// StatusReport is /status: the configuration in use and every module.
type StatusReport struct {
	Config  ConfigStatus   `json:"config"`
	Modules []ModuleStatus `json:"modules"`
}

// ModuleStatus is one module in /status.
type ModuleStatus struct {
	Name       string            `json:"name"`
	Topic      string            `json:"topic"`
	WindowUsed int               `json:"window_used"`
	WindowSize int               `json:"window_size"`
	Partitions []PartitionStatus `json:"partitions"`
	// Backends are the circuit breakers, when breaker_failures is set.
	Backends []BackendStatus `json:"backends,omitempty"`
}

// PartitionStatus is one partition in /status.
type PartitionStatus struct {
	Partition int32 `json:"partition"`
	Epoch     int64 `json:"epoch"`     // this claim's owner node creation zxid (X-Ktransfer-Epoch)
	Committed int64 `json:"committed"` // next offset to push, stored in ZooKeeper
	Frontier  int64 `json:"acknowledged_to"`
	InFlight  int   `json:"in_flight"`
	// HighWater is the partition's log end, and Lag the records between
	// Committed and it (never negative): nil (null) until Kafka has told
	// this claim the log end, as kmonitor reports a number it does not
	// know.
	HighWater *int64 `json:"high_water"`
	Lag       *int64 `json:"lag"`
}

// Status reports every module and partition.
func (t *Transfer) Status() []ModuleStatus {
	var out []ModuleStatus
	for _, m := range t.liveModules() {
		ms := ModuleStatus{Name: m.cfg.Name, Topic: m.cfg.Topic, WindowUsed: len(m.slots), WindowSize: m.cfg.WindowSize,
			Backends: m.breakers.status()}
		m.mu.Lock()
		for id, p := range m.parts {
			if p.tracker == nil {
				continue
			}
			// The offset stored, not the tracker's commit point: while a
			// restart waits for the records dispatched before it, their
			// commits store nothing.
			ps := PartitionStatus{Partition: id, Epoch: p.epoch, Committed: p.stored.Load()}
			_, ps.Frontier, ps.InFlight, _ = p.tracker.snapshot()
			if hw := p.highWater.Load(); hw >= 0 {
				lag := max(0, hw-ps.Committed)
				ps.HighWater, ps.Lag = &hw, &lag
			}
			ms.Partitions = append(ms.Partitions, ps)
		}
		m.mu.Unlock()
		sort.Slice(ms.Partitions, func(i, j int) bool { return ms.Partitions[i].Partition < ms.Partitions[j].Partition })
		out = append(out, ms)
	}
	return out
}

// partitions lists topic's partitions, asking the brokers.
func (t *Transfer) partitions(ctx context.Context, topic string) ([]int32, error) {
	md, err := t.topicDetail(ctx, topic)
	if err != nil {
		return nil, err
	}
	parts := md.partitions
	t.lastPartsMu.Lock()
	if t.lastParts == nil {
		t.lastParts = map[string][]int32{}
	}
	t.lastParts[topic] = parts
	if t.firstParts == nil {
		t.firstParts = map[string][]int32{}
	}
	if _, ok := t.firstParts[topic]; !ok {
		t.firstParts[topic] = parts
	}
	t.lastPartsMu.Unlock()
	return parts, nil
}

// topicDetail asks the brokers for topic's metadata, for kafkaTimeout at
// most; an error for a topic they do not have wraps the topic's own
// (kerr.UnknownTopicOrPartition).
func (t *Transfer) topicDetail(ctx context.Context, topic string) (topicMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, kafkaTimeout)
	defer cancel()
	type listed struct {
		md  topicMeta
		err error
	}
	answer := make(chan listed, 1)
	// kgo heeds ctx only once a connection is set up: a broker that does
	// not answer its first request (ApiVersions) would hold a stop for
	// kgo's request timeout overhead (10 s). The request ends when the
	// client closes.
	go func() {
		md, err := t.listTopic(ctx, topic)
		answer <- listed{md, err}
	}()
	var l listed
	select {
	case l = <-answer:
	case <-ctx.Done():
		l.err = ctx.Err()
	}
	var te topicError
	switch {
	case errors.As(l.err, &te):
		return topicMeta{}, fmt.Errorf("topic %s: %w", topic, te.err)
	case l.err != nil:
		return topicMeta{}, fmt.Errorf("metadata of topic %s: %w", topic, l.err)
	}
	return l.md, nil
}

// topicMeta is what ktransfer reads of a topic's metadata.
type topicMeta struct {
	id         [16]byte
	partitions []int32 // in order
}

// errNotInAnswer: the brokers' metadata answer did not name the topic
// asked for.
var errNotInAnswer = errors.New("not in the metadata answer")

// topicError is the metadata answer's error for the topic asked: its own
// error code, or errNotInAnswer.
type topicError struct{ err error }

func (e topicError) Error() string { return e.err.Error() }
func (e topicError) Unwrap() error { return e.err }

// listTopic asks the brokers for topic's metadata; the error is the
// request's, or a topicError. Not
// kadm's ListTopics: it answers from the client's metadata when that is
// younger than MetadataMinAge (kafkaconf sets 100 ms; kgo's default is
// 5 s), and a topic a module read just before its deletion was still
// found by a reload adding a module of it, which claimed its partitions
// (TestReloadedModuleOfADeletedTopicWaits: the topic deleted 10 ms after
// the module removed by the reload before had read it).
func (t *Transfer) listTopic(ctx context.Context, topic string) (topicMeta, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	resp, err := t.client.RequestCachedMetadata(ctx, req, time.Nanosecond)
	if err != nil {
		return topicMeta{}, err
	}
	for _, rt := range resp.Topics {
		if rt.Topic == nil || *rt.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
			return topicMeta{}, topicError{err}
		}
		md := topicMeta{id: rt.TopicID}
		for _, rp := range rt.Partitions {
			md.partitions = append(md.partitions, rp.Partition)
		}
		slices.Sort(md.partitions)
		return md, nil
	}
	return topicMeta{}, topicError{errNotInAnswer}
}

// addedWhileRunning reports whether partition was not in topic's
// partition list as this process first read it: the partition was added
// to the topic while the process ran.
func (t *Transfer) addedWhileRunning(topic string, partition int32) bool {
	t.lastPartsMu.Lock()
	defer t.lastPartsMu.Unlock()
	first, ok := t.firstParts[topic]
	return ok && !slices.Contains(first, partition)
}

// firstPartitionCount is the number of topic's partitions as this process
// first read it, 0 when it did not read them yet.
func (t *Transfer) firstPartitionCount(topic string) int32 {
	t.lastPartsMu.Lock()
	defer t.lastPartsMu.Unlock()
	return int32(len(t.firstParts[topic]))
}

// knownPartitions is topic's partitions as read last (every module
// follows its topic's: followPartitions), asking the brokers only when
// they were never read: the fleet goes on handing partitions over (a
// stopping process's partitions are taken) at once while Kafka is away or
// silent, as it did when the partition list came from the client's
// metadata cache.
func (t *Transfer) knownPartitions(ctx context.Context, topic string) ([]int32, error) {
	if last, ok := t.lastPartitions(topic); ok {
		return last, nil
	}
	return t.partitions(ctx, topic)
}

// lastPartitions is topic's partition list as read last, if it was read.
func (t *Transfer) lastPartitions(topic string) ([]int32, bool) {
	t.lastPartsMu.Lock()
	defer t.lastPartsMu.Unlock()
	last, ok := t.lastParts[topic]
	return last, ok
}

// zkLog passes the ZooKeeper client's lines to the log at debug level,
// and notes the session timeout the server granted (the client says it
// only in this line).
type zkLog struct {
	l       *slog.Logger
	granted *atomic.Int64
}

func (z zkLog) Printf(format string, args ...any) {
	if format == "authenticated: id=%d, timeout=%d" && len(args) == 2 {
		if ms, ok := args[1].(int32); ok && ms > 0 {
			z.granted.Store(int64(ms))
		}
	}
	z.l.Debug("zookeeper client", "line", fmt.Sprintf(format, args...))
}
