package kproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/config"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Server is a running kproxy: the HTTP listener, the gRPC listener (when
// grpc_port is set), the admin listener and the Kafka producers.
type Server struct {
	cfg     Config
	log     *slog.Logger
	ln      net.Listener
	adminLn net.Listener
	grpcLn  net.Listener // nil: grpc_port 0
	http    *fasthttp.Server
	admin   *http.Server
	grpc    *grpc.Server
	// produceLate is Produce's answer to a call whose message did not come
	// within read_timeout_ms (cutRead).
	produceLate *status.Status
	prod        *producers
	txns        *txnPool // nil: transactional_producers 0
	spool       *spooler // nil: spool_dir empty
	check       *topicCheck
	bodies      *bodyBudget // max_body_bytes_in_flight
	purges      topicPurges // of topics whose id a client holds stale
	metrics     *metrics
	errLog      sampled
	// grpcLog reports the clients of grpc_port that do not speak gRPC.
	grpcLog sampled
	// acks0Log reports acks=0 records lost after their 200, sampled.
	acks0Log sampled
	// access is the clients and topics_allowed in force: a reload (SIGHUP)
	// replaces it whole; a request reads it once (acl).
	access atomic.Pointer[access]
	reload reloader  // SIGHUP (reload.go)
	ext    extFields // ext_headers and trusted_proxies
	// headerNames interns the record header names of X-Kafka-Header-*.
	headerNames headerNames

	produceTimeout time.Duration
	deadlines      *deadlines
	inFlight       atomic.Int64
	acks0Out       atomic.Int64 // acks=0 records answered and not yet delivered or lost

	closing atomic.Bool
	// drain is closed when shutting down (endDrain): gRPC streams stop
	// taking requests, health watches end, Produce calls whose message
	// has not come are cut (drainCtx).
	drain     <-chan struct{}
	drainCtx  context.Context
	endDrain  context.CancelFunc
	drainOnce sync.Once
	// grpcReaders are the goroutines receiving the requests of streams;
	// they end with their stream.
	grpcReaders sync.WaitGroup
	// conns are the HTTP port's connections fasthttp serves: closed by the
	// shutdown when it gives up on them.
	connsMu sync.Mutex
	conns   map[net.Conn]struct{}
	// lingering are the HTTP port's connections closing after a refused
	// request (linger), and grpc_port's after an HTTP/1 request: cut and waited for by the shutdown and Close.
	lingering lingering
	// stopLingering are the HTTP port's connections closed after their
	// last answer as kproxy stops, with bytes of the client's unread
	// (lingerListener.atStop; over TLS whether or not: httpsConn): they linger on their own goroutines while
	// the stop goes on, and Close cuts those left, last.
	stopLingering lingering

	closeOnce sync.Once
	closeErr  error
	kafkaOnce sync.Once // closeKafka
	kafkaErr  error
}

// listenAdmin opens the admin listener. When admin_addr is the default
// (the file does not set it: 2015 files have no such key) and its port is
// taken — another kproxy on the host, or the HTTP port itself — a free port
// on the same host is used instead, and logged. An admin_addr the file
// sets must be free.
func listenAdmin(cfg Config, log *slog.Logger) (net.Listener, error) {
	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err == nil || !cfg.adminAddrDefault || !errors.Is(err, syscall.EADDRINUSE) {
		return ln, err
	}
	host, _, _ := net.SplitHostPort(cfg.AdminAddr) // valid: checked by Validate
	ln, ferr := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if ferr != nil {
		return nil, err
	}
	log.Warn("admin port taken; using a free one", "admin_addr", cfg.AdminAddr, "using", ln.Addr().String())
	return ln, nil
}

// New validates cfg, opens the listeners and connects to Kafka. It returns
// an error naming what failed; nothing is left open then.
func New(cfg Config, log *slog.Logger) (*Server, error) {
	return NewContext(context.Background(), cfg, log)
}

// NewContext is New, given up when ctx ends (a stop during start-up):
// waiting for a broker to answer takes up to kafka.dial_timeout_ms.
func NewContext(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate("config"); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, produceTimeout: time.Duration(cfg.ProduceTimeoutMs) * time.Millisecond,
		ext: newExtFields(cfg), bodies: newBodyBudget(cfg.MaxBodyBytesInFlight)}
	s.drainCtx, s.endDrain = context.WithCancel(context.Background())
	s.drain = s.drainCtx.Done()
	s.deadlines = newDeadlines(s.produceTimeout)
	s.purges.log = log
	s.errLog = sampled{log: log, every: time.Second}
	s.grpcLog = sampled{log: log, every: time.Second}
	s.acks0Log = sampled{log: log, every: time.Second}
	a, err := newAccess(cfg, nil)
	if err != nil {
		return nil, err
	}
	s.access.Store(a)
	s.reload.req, s.reload.level = make(chan struct{}, 1), cfg.LogLevel
	where := "" // the file, in start-up errors
	if cfg.file != "" {
		where = cfg.file + ": "
	}
	addr := net.JoinHostPort(cfg.ListenHost, strconv.Itoa(cfg.Port))
	if s.ln, err = net.Listen("tcp", addr); err != nil {
		return nil, fmt.Errorf("%slisten on %s (port): %w", where, addr, err)
	}
	s.ln = &acceptRetrying{Listener: s.ln, log: &sampled{log: log, every: time.Second}, closed: make(chan struct{})}
	var tlsCfg *tls.Config
	if cfg.TLSCertFile != "" {
		cert, err := config.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			s.ln.Close()
			return nil, fmt.Errorf("%stls_cert_file %s, tls_key_file %s: %w", where, cfg.TLSCertFile, cfg.TLSKeyFile, err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.ln = httpsListener{s.ln, tlsCfg, plainAnswer{
			writeTimeout: time.Duration(cfg.WriteTimeoutMs) * time.Millisecond,
			linger:       newLinger(cfg, &s.lingering),
		}, newLinger(cfg, &s.stopLingering)}
	} else {
		// One read per request, not two (release_idle_buffers), and the
		// socket's deadlines moved only when they must be.
		s.ln = readAheadListener{s.ln}
		// A refused request's answer is not lost to a reset, nor, at a
		// stop, the answers a client pipelining requests has not read.
		s.ln = lingerListener{Listener: s.ln, linger: newLinger(cfg, &s.lingering), atStop: newLinger(cfg, &s.stopLingering)}
	}
	if cfg.GRPCPort != 0 {
		gaddr := net.JoinHostPort(cfg.ListenHost, strconv.Itoa(cfg.GRPCPort))
		if s.grpcLn, err = net.Listen("tcp", gaddr); err != nil {
			s.ln.Close()
			return nil, fmt.Errorf("%slisten on %s (grpc_port %d): %w", where, gaddr, cfg.GRPCPort, err)
		}
	}
	if cfg.AdminAddr != "" {
		if s.adminLn, err = listenAdmin(cfg, log); err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("%slisten on %s (admin_addr): %w", where, cfg.AdminAddr, err)
		}
	}
	txnPrefix := cfg.TransactionalID
	if cfg.TransactionalProducers > 0 && txnPrefix == "" {
		host, err := os.Hostname()
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("%stransactional_producers: the host name, for the default transactional_id, cannot be read (set transactional_id): %w", where, err)
		}
		_, port, _ := net.SplitHostPort(s.ln.Addr().String())
		txnPrefix = defaultTxnID(host, cfg.ListenHost, port)
	}
	reg := prometheus.NewRegistry()
	s.metrics = newMetrics(reg, &s.inFlight)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "kproxy_body_bytes_in_flight",
		Help: "Bytes of max_body_bytes_in_flight held: the buffers of the request bodies over 16 KiB (and chunked ones) being read or handled, by their declared length rounded up to a power of two (what fasthttp allocates; a chunked body's, max_request_size_bytes until it is read).",
	}, func() float64 { return float64(s.bodies.inUse()) }))
	s.check = newTopicCheck(cfg.AutoCreateTopics, cfg.MaxMessageBytes)
	hooks := producerHooks{batchRecords: s.metrics.batchRecords, batchMaxBytes: s.check.batchMaxBytes,
		epochChanged: func(from, to [2]int64) {
			moves := int64(1) // a new producer id
			if from[0] == to[0] {
				moves = to[1] - from[1] // epochs passed with no record written between
			}
			s.metrics.epochChanges.Add(float64(moves))
			s.log.Warn("kafka's acks=-1 client moved to a new producer epoch (it gave up a batch a broker may hold, purged a topic, or a broker forgot the producer): a batch retried across the change may be written twice",
				"producer_id", to[0], "epoch", to[1], "from_producer_id", from[0], "from_epoch", from[1])
		}}
	if s.prod, err = newProducers(ctx, cfg, log, hooks); err != nil {
		s.closeListeners()
		return nil, err
	}
	s.check.client = s.prod.leader
	if cfg.SpoolDir != "" {
		if s.spool, err = openSpooler(ctx, cfg, log, s.prod, s.check, reg); err != nil {
			s.prod.close(context.Background())
			s.closeListeners()
			return nil, err
		}
	}
	if cfg.TransactionalProducers > 0 {
		s.txns = newTxnPool(cfg, txnPrefix, s.prod, log)
		s.txns.retired = s.purges.forgetClient
	}
	if cfg.producerNumSet || cfg.ProducerNum != 1 {
		// Kept so that 2015 files load; kgo keeps one client per acks level.
		log.Info("config key has no effect", "key", "producer_num", "value", cfg.ProducerNum)
	}
	for _, k := range cfg.noEffect() {
		log.Warn("config key has no effect", "file", cfg.file, "key", k.key, "value", k.value, "reason", k.reason)
	}
	for _, k := range cfg.unwise() {
		log.Warn("config value unwise", "file", cfg.file, "key", k.key, "value", k.value, "reason", k.reason)
	}
	s.http = &fasthttp.Server{
		Handler:            s.handle,
		ErrorHandler:       s.requestError,
		Name:               "kproxy",
		ReadTimeout:        time.Duration(cfg.ReadTimeoutMs) * time.Millisecond,
		WriteTimeout:       time.Duration(cfg.WriteTimeoutMs) * time.Millisecond,
		IdleTimeout:        time.Duration(cfg.IdleTimeoutMs) * time.Millisecond,
		MaxRequestBodySize: cfg.MaxRequestSizeBytes,
		ExpectHandler:      s.expect,
		HeaderReceived:     s.headerReceived, // max_body_bytes_in_flight
		// A body is msgpack unless typed application/json, whatever else
		// its type says: never read as a multipart form (which fasthttp
		// would refuse, or give back encoded anew).
		DisablePreParseMultipartForm: true,
		// fasthttp's errors without the request's bytes: one line that
		// requestError can answer (and no client's secret in a log).
		SecureErrorLogMessage: true,
		ReadBufferSize:        cfg.MaxHeaderBytes, // also the largest request line and headers
		CloseOnShutdown:       true,
		ReduceMemoryUsage:     cfg.ReleaseIdleBuffers,
		Logger:                fasthttpLog{log},
		ConnState:             s.connState,
	}
	if s.adminLn != nil {
		s.admin = daemon.AdminServer(s.adminMux(reg))
	}
	if s.grpcLn != nil {
		s.grpcLn = &grpcListener{Listener: s.grpcLn, tls: tlsCfg != nil, log: &s.grpcLog, sendWait: s.sendWait(),
			plain: plainAnswer{writeTimeout: time.Duration(cfg.WriteTimeoutMs) * time.Millisecond, linger: newLinger(cfg, &s.lingering)}}
		s.grpc = s.newGRPC(tlsCfg)
	}
	return s, nil
}

// expect answers a request's "Expect: 100-continue" (fasthttp's
// ExpectHandler). A request refused from its line and headers alone — a
// body over max_request_size_bytes from its Content-Length (413), or what
// /commit and /batch check before the body: method, parameters,
// credentials, a topic not allowed or, for /commit, unknown — gets that
// answer now, as without the header, instead of a 100 inviting the client
// to send what is then refused (RFC 9110 10.1.1). fasthttp writes the
// response prepared here with the status returned, then closes the
// connection, which lingers: the client may be sending. StatusContinue
// lets the body come.
func (s *Server) expect(ctx *fasthttp.RequestCtx) int {
	if ctx.Request.Header.ContentLength() > s.cfg.MaxRequestSizeBytes {
		s.requestError(ctx, fasthttp.ErrBodyTooLarge)
		return fasthttp.StatusRequestEntityTooLarge
	}
	start := time.Now()
	var code int
	overloaded := s.bodies.refused(&ctx.Request.Header) // max_body_bytes_in_flight (headerReceived)
	switch string(ctx.Path()) {
	case "/commit":
		// Refused for its line or headers (401, 403, …) as without the
		// budget; then for the budget, its topic not looked up.
		if !overloaded {
			code = s.expectCommit(ctx)
		} else if _, code = s.checkCommitHead(ctx); code == 0 {
			code = s.bodiesOverloaded(ctx)
		}
		if code != 0 {
			s.requestID(ctx)
			s.metrics.observe(code, start)
		}
	case "/batch":
		if _, code = s.checkBatchHead(ctx); code == 0 && overloaded {
			code = s.bodiesOverloaded(ctx)
		}
		if code != 0 {
			s.requestID(ctx)
			s.metrics.observeBatch(code, start)
		}
	default:
		if overloaded {
			code = s.bodiesOverloaded(ctx)
		}
	}
	if code == 0 {
		// The body comes after the 100, into the buffer the request
		// holds: should fasthttp fail to write the 100, it drops the
		// connection without an answer, whose close gives it back
		// (bodyBudget.closed).
		// The body comes after the 100: it has read_timeout_ms from
		// now, not what a topic's look-up above left of the request's.
		// fasthttp writes the 100 under the write deadline it set for
		// the connection's previous answer, long past on a keep-alive
		// connection (the write failed, and the connection was closed
		// without an answer): the 100 has write_timeout_ms from now.
		now := time.Now()
		if d := s.http.ReadTimeout; d > 0 {
			_ = ctx.Conn().SetReadDeadline(now.Add(d))
		}
		if d := s.http.WriteTimeout; d > 0 {
			_ = ctx.Conn().SetWriteDeadline(now.Add(d))
		}
		return fasthttp.StatusContinue
	}
	s.bodyDone(ctx) // fasthttp calls no handler after
	lingerOnClose(ctx.Conn())
	return code
}

// expectDeadline is the user value under which expectCommit leaves a
// request's deadline to commit: the one its topic's look-up ran under.
type expectDeadline struct{}

// expectSpoolAfter is the user value under which expectCommit leaves to
// commit the spool_after_ms its topic's look-up ran under (topicFor).
type expectSpoolAfter struct{}

// expectCommit checks a /commit request announced with "Expect:
// 100-continue" before its body (checkCommitHead), then, without
// auto_create_topics, looks its topic up as commit would: a topic the
// brokers refuse (unknown: 404) is answered (code) without the body. The look-up is part of the record's
// deadline, which starts here and is left to commit (expectDeadline); a
// look-up without an answer leaves the decision to commit.
func (s *Server) expectCommit(ctx *fasthttp.RequestCtx) int {
	h, code := s.checkCommitHead(ctx)
	if code != 0 || s.check.autoCreate {
		// With auto_create_topics the brokers would create an unknown
		// topic now, for a request whose body may be refused: its topic
		// is looked up after the body, as without the header.
		return code
	}
	// A look-up counts in req_pool_size as commit's does; over it, the
	// request is refused (503) once read, as today.
	if n := s.inFlight.Add(1); n > int64(s.cfg.ReqPoolSize) {
		s.inFlight.Add(-1)
		return 0
	}
	defer s.inFlight.Add(-1)
	dl := s.deadlines.get()
	ctx.SetUserValue(expectDeadline{}, dl)
	var timeout time.Duration
	if s.spoolable(h.acks, false, h.noSpool) {
		// As topicFor: then the topic spools. commit's look-up, after
		// the body, gets what is left of this spool_after_ms.
		ctx.SetUserValue(expectSpoolAfter{}, s.spool.after.get())
		timeout = s.spool.afterD
	}
	_, err := s.check.exists(dl, h.topic, timeout)
	if err == nil || unreachable(err) {
		return 0
	}
	code, reason := produceStatus(err, sendTrace{})
	return s.kafkaFail(ctx, code, reason, string(h.topic), err)
}

// Addr is the HTTP listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// GRPCAddr is the gRPC listener's address, or nil when grpc_port is 0.
func (s *Server) GRPCAddr() net.Addr {
	if s.grpcLn == nil {
		return nil
	}
	return s.grpcLn.Addr()
}

// AdminAddr is the admin listener's address, or nil when it is off.
func (s *Server) AdminAddr() net.Addr {
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}

// Run serves until ctx is done or a listener fails, then shuts down.
func (s *Server) Run(ctx context.Context) error {
	reloadCtx, stopReloads := context.WithCancel(ctx)
	var reloads sync.WaitGroup
	reloads.Go(func() { s.reloadLoop(reloadCtx) })
	defer func() { stopReloads(); reloads.Wait() }() // a reload under way ends first
	errc := make(chan error, 3)
	servers := 1
	go func() { errc <- s.http.Serve(s.ln) }()
	if s.grpc != nil {
		servers++
		go func() {
			if err := s.grpc.Serve(s.grpcLn); err != nil {
				errc <- fmt.Errorf("grpc listener: %w", err)
				return
			}
			errc <- nil // stopped
		}()
	}
	if s.admin != nil {
		servers++
		go func() {
			if err := s.admin.Serve(s.adminLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin listener: %w", err)
				return
			}
			errc <- nil
		}()
	}
	if s.spool != nil {
		s.spool.start() // the drain starts with what the spool held at Open
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		servers--
	}
	s.log.Info("shutting down", "in_flight", s.inFlight.Load())

	// Shutdown order:
	// 1. health says NOT_SERVING (GET /health 503); stop accepting
	//    connections and calls (HTTP and gRPC at once) and finish the
	//    requests in flight, bounded by shutdown_timeout_ms; their records
	//    reach Kafka or the client hears why not. gRPC streams stop taking
	//    requests, answer those they took and end UNAVAILABLE.
	//    Connections lingering after a refused request close at once.
	// 2. requests still in flight at shutdown_timeout_ms (records waiting
	//    for Kafka longer: shutdown_timeout_ms below produce_timeout_ms)
	//    are not dropped: the Kafka clients are closed at once (step 3
	//    without the flush), which fails their records, and each is
	//    answered — 503 when its record never left, 504 when it may have
	//    been written — within answerWait; only then are the calls still
	//    open cancelled and the connections left closed.
	// 3. let the aborts of failed transactions finish, close the
	//    transactional clients, then flush the other kgo clients (acks=0
	//    records still being delivered included) and close them; then
	//    append what is queued for the spool, stop its drain (records
	//    Kafka has not acknowledged stay in the spool) and close it.
	// 4. stop the admin listener last, so /metrics shows the shutdown
	//    (Close).
	s.closing.Store(true)
	s.drainOnce.Do(s.endDrain)
	// Connections lingering after a refused request have no request in
	// flight: they close now (the plain-HTTP answer on the HTTPS port
	// lingers inside fasthttp's read, which the shutdown would wait for).
	s.lingering.stop()
	timeout := time.Duration(s.cfg.ShutdownTimeoutMs) * time.Millisecond
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// hctx ends the waits for the requests in flight: past step 2.
	hctx, giveUp := context.WithCancel(context.Background())
	defer giveUp()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var stopping sync.WaitGroup
		if s.grpc != nil {
			stopping.Go(func() { s.stopGRPC(hctx) })
		}
		if err := s.http.ShutdownWithContext(hctx); err != nil {
			// fasthttp leaves them open: a client still sending a
			// request would hold its connection to read_timeout_ms.
			s.closeConns()
			s.log.Warn("http connections still open after the requests in flight were answered; closed", "err", err)
		}
		stopping.Wait()
	}()
	select {
	case <-finished:
	case <-sctx.Done():
		s.log.Warn("requests still in flight at shutdown_timeout_ms; closing the kafka clients: their records fail and are answered now",
			"in_flight", s.inFlight.Load(), "shutdown_timeout_ms", s.cfg.ShutdownTimeoutMs)
		s.closeKafka(sctx) // sctx is over: no flush
		select {
		case <-finished:
		case <-time.After(max(answerWait, time.Duration(s.cfg.WriteTimeoutMs)*time.Millisecond)):
			s.log.Warn("requests still unanswered after the kafka clients closed; closing their connections", "in_flight", s.inFlight.Load())
			giveUp()
			<-finished
		}
	}
	if err := s.Close(); err != nil && runErr == nil {
		runErr = err
	}
	for range servers {
		if err := <-errc; err != nil && runErr == nil {
			runErr = err
		}
	}
	s.log.Info("stopped")
	return runErr
}

// Close releases what New acquired: producers are flushed, then closed. It
// is idempotent and safe after Run.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.drainOnce.Do(s.endDrain)
		if s.grpc != nil {
			// No gRPC handler runs past here (none after Run's shutdown).
			s.stopGRPCHandshakes()
			s.grpc.Stop()
			s.grpcReaders.Wait()
		}
		// Records already accepted go out and are answered, bounded by
		// shutdown_timeout_ms; then the clients close and refuse new ones.
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(s.cfg.ShutdownTimeoutMs)*time.Millisecond)
		defer cancel()
		err := s.closeKafka(ctx)
		// kgo runs the promises of the records its Close failed after
		// Close returned: the acks=0 ones are waited for (bounded), so
		// that they are counted and logged below.
		for until := time.Now().Add(answerWait); s.acks0Out.Load() > 0 && time.Now().Before(until); {
			time.Sleep(time.Millisecond)
		}
		// The records the sampled lines held back since the last one: the
		// process and its metrics end here, the log is what is left.
		s.acks0Log.flush("acks=0 records answered 200 and not delivered, not logged one by one")
		s.errLog.flush("kafka writes failed, not logged one by one")
		s.grpcLog.flush("grpc_port: clients refused (not speaking grpc, or refused in the TLS handshake), not logged one by one")
		if s.admin != nil && !daemon.StopHTTP(s.admin, time.Second) {
			s.log.Warn("admin listener: requests still in progress after 1s, closed")
		}
		s.closeListeners()
		s.lingering.stop() // no connection outlives Close
		s.stopLingering.stop()
		s.closeErr = err
	})
	return s.closeErr
}

// connState keeps the set of the connections fasthttp serves.
func (s *Server) connState(c net.Conn, st fasthttp.ConnState) {
	switch st {
	case fasthttp.StateNew:
		s.connsMu.Lock()
		if s.conns == nil {
			s.conns = make(map[net.Conn]struct{})
		}
		s.conns[c] = struct{}{}
		s.connsMu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		s.connsMu.Lock()
		delete(s.conns, c)
		s.connsMu.Unlock()
		s.bodies.closed(c)
	}
}

// closeConns closes the connections fasthttp still serves, a TLS one
// without its close_notify (whose write may wait 5 s for a client that
// does not read).
func (s *Server) closeConns() {
	s.connsMu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.connsMu.Unlock()
	for _, c := range conns {
		if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
			c = tc.NetConn()
		}
		if lc, ok := c.(*lingerConn); ok {
			lc.closeNow() // from this goroutine, not the connection's: no lingering
			continue
		}
		c.Close()
	}
}

// answerWait bounds, at shutdown, the wait for the answers of requests
// whose records the closing of the Kafka clients failed (at least
// write_timeout_ms: the answer's write).
const answerWait = time.Second

// sendWait bounds, at shutdown, the sending of answers a gRPC client does
// not read (their HTTP/2 window full): max(answerWait, write_timeout_ms).
func (s *Server) sendWait() time.Duration {
	return max(answerWait, time.Duration(s.cfg.WriteTimeoutMs)*time.Millisecond)
}

// closeKafka flushes the Kafka clients until ctx ends, then closes them
// (records left fail, and their requests are answered), then the spool.
// It is idempotent: the first call's error is returned.
func (s *Server) closeKafka(ctx context.Context) error {
	s.kafkaOnce.Do(func() {
		var errs []error
		// No purge starts from here; one under way may wait for a
		// client's metadata loop (a broker sitting on a metadata
		// request): closing the client ends that wait, so the purges
		// are waited for after the clients are closed.
		s.purges.stop()
		defer s.purges.wait()
		if s.txns != nil {
			s.txns.close(ctx) // before the producers: a retired client's id is fenced through them
		}
		if err := s.prod.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close kafka producers: %w", err))
		}
		if s.spool != nil {
			// After the producers: their last failures may still be
			// spooled. Then the drain stops and the spool is closed.
			if err := s.spool.close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		s.kafkaErr = errors.Join(errs...)
	})
	return s.kafkaErr
}

func (s *Server) closeListeners() {
	s.ln.Close()
	if s.grpcLn != nil {
		s.grpcLn.Close()
	}
	if s.adminLn != nil {
		s.adminLn.Close()
	}
}

func (s *Server) adminMux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) {
		code, text := s.healthStatus()
		w.WriteHeader(code)
		fmt.Fprintln(w, text)
	})
	daemon.HandlePprof(mux)
	return mux
}

// spoolEntrySlack is what the spool entry of a record of max_message_bytes
// takes beyond it, at most: the entry's length and CRC (8), its time (8),
// the topic (Kafka's longest name, 249 bytes, and its length: 2), the key's
// and the value's lengths (4 each, up to 100 MiB) and the header count (1),
// less the recordOverhead max_message_bytes counts (a header counts 10
// there, its two lengths at most 8 in the entry).
const spoolEntrySlack = 8 + 8 + 2 + 249 + 4 + 4 + 1 - recordOverhead

// diskError is the system's word for err (no space left on device, file
// too large, read-only file system, …), without the spool's file names:
// /health on the data port asks for no credentials.
func diskError(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	return "the write failed"
}

// spoolFailHealth is how long /health says 503 after an append the spool's
// disk refused (healthStatus).
const spoolFailHealth = 10 * time.Second

// healthStatus is 200 while serving with a broker reachable (one answered
// within the last second), 503 while shutting down or when no broker
// answers. With the spool, kproxy takes records while Kafka is away: 200
// "degraded: spooling" while the spool holds records or no broker answers,
// 503 once the spool is full, or for spoolFailHealth after its disk
// refused an append (full for other files, read-only, failing) and none
// succeeded since, or while an append has waited for the disk longer than
// spoolStuckHealth.
func (s *Server) healthStatus() (int, string) {
	if s.closing.Load() {
		return 503, "shutting down"
	}
	reachable := s.prod.reachable()
	if s.spool != nil {
		st := s.spool.sp.Stats()
		if st.Bytes+int64(s.cfg.MaxMessageBytes)+spoolEntrySlack > s.cfg.SpoolMaxBytes && (st.Records > 0 || !reachable) {
			return 503, fmt.Sprintf("spool full: %d records, %d bytes (spool_max_bytes %d)", st.Records, st.Bytes, s.cfg.SpoolMaxBytes)
		}
		if d, stuck := s.spool.appendStuck(); stuck {
			// A disk that hangs (an NFS hard mount, a failing device) holds
			// every spooled request until it answers: a load balancer sends
			// them elsewhere meanwhile.
			return 503, fmt.Sprintf("spool disk not answering: an append (write and fsync) has waited %v; spooled requests wait for it", d.Round(time.Second))
		}
		if at, err := s.spool.writeFailure(); err != nil && time.Since(at) < spoolFailHealth && (st.Records > 0 || !reachable) {
			// Every record it would spool is refused: a load balancer
			// sends them elsewhere. Said for spoolFailHealth after the
			// latest failure, so that, sent nothing meanwhile, kproxy is
			// tried again once the disk may take writes.
			return 503, "spool cannot write: " + diskError(err)
		}
		switch {
		case !reachable:
			return 200, fmt.Sprintf("degraded: spooling, no kafka broker reachable (%d records in the spool)", st.Records)
		case st.Records > 0:
			return 200, fmt.Sprintf("degraded: spooling (%d records in the spool)", st.Records)
		}
	}
	if !reachable {
		return 503, "no kafka broker reachable"
	}
	return 200, "ok"
}

// sampled logs at most one line per interval, with the number of lines
// it held back, so that an error hitting every request does not flood the
// log.
type sampled struct {
	log        *slog.Logger
	every      time.Duration
	last       atomic.Int64
	suppressed atomic.Int64
}

func (l *sampled) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if now-last < int64(l.every) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return
	}
	l.log.Warn(msg, append(args, "suppressed", l.suppressed.Swap(0))...)
}

// flush logs, under msg, how many lines were held back since the last
// one, if any.
func (l *sampled) flush(msg string) {
	if n := l.suppressed.Swap(0); n > 0 {
		l.log.Warn(msg, "suppressed", n)
	}
}

// acceptRetrying is the HTTP port's listener, its accepts retried while
// the process is out of file descriptors or the kernel out of socket
// memory (a connection flood, too low a ulimit -n), as Go's own servers
// (admin, gRPC) do: fasthttp takes any accept error but a timeout for the
// listener's end, and kproxy shut down.
type acceptRetrying struct {
	net.Listener
	log       *sampled
	closed    chan struct{} // closed by Close: no more waits
	closeOnce sync.Once
}

func (l *acceptRetrying) Accept() (net.Conn, error) {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil || !(errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
			errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)) {
			if err == nil && wait > 0 { // accepts failed before this one
				l.log.flush("accept failed; retried, not logged one by one")
				l.log.log.Info("accepting connections again")
			}
			return c, err
		}
		wait = min(max(2*wait, 5*time.Millisecond), time.Second)
		l.log.warn("accept failed; retrying", "err", err, "retry_in", wait)
		select {
		case <-time.After(wait):
		case <-l.closed: // the next Accept says the listener is closed
		}
	}
}

func (l *acceptRetrying) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.log.flush("accept failed; retried, not logged one by one")
	})
	return l.Listener.Close()
}

type fasthttpLog struct{ l *slog.Logger }

func (f fasthttpLog) Printf(format string, args ...any) {
	for i, a := range args {
		if err, ok := a.(error); ok {
			args[i] = requestErrorText(err) // never the request's bytes
		}
	}
	f.l.Debug("http server", "line", fmt.Sprintf(format, args...))
}

// InFlight is the number of /commit requests being processed.
func (s *Server) InFlight() int64 { return s.inFlight.Load() }

// defaultTxnID is the transactional id prefix of a kproxy that sets no
// transactional_id: kproxy-<host name>-<port>, and the listen_host between
// them when it is set to an address of its own. Two processes of one host
// may share a port on two addresses: with the host name and port alone
// they shared their ids, each fencing the other's transactions (503s
// without end under atomic traffic). A process listening on every
// address keeps the id it had.
func defaultTxnID(host, listenHost, port string) string {
	if ip := net.ParseIP(listenHost); listenHost != "" && (ip == nil || !ip.IsUnspecified()) {
		return "kproxy-" + host + "-" + listenHost + "-" + port
	}
	return "kproxy-" + host + "-" + port
}
