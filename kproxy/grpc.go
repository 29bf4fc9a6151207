package kproxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
)

// The gRPC service on grpc_port: kafkahttpwrapper.v1.KProxy's Produce and
// ProduceStream read a ProduceRequest into the records of a batch and hand
// them to the core of batches (batch.go), as POST /batch does with its
// body: the same checks, credentials, ACL, rate limits, statuses and
// metrics. grpc.health.v1.Health and server reflection serve beside it.

// streamWindow is how many requests of one ProduceStream are out at once
// (started and not yet answered). The stream reads no further request
// until the oldest is answered: gRPC's flow control then holds the client.
const streamWindow = 8

// answerMargin is the most a gRPC request's answer is sent before the
// client's deadline, for it to arrive in time (a tenth of the time left
// when that is less).
const answerMargin = 200 * time.Millisecond

// emptyValue is written for an empty value or header value: a nil one
// would be written as null (a tombstone, for a value).
var emptyValue = []byte{}

// newGRPC makes the gRPC server (tlsCfg nil: plain text). It starts no
// goroutine: Run serves it.
func (s *Server) newGRPC(tlsCfg *tls.Config) *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestSizeBytes),
		// A call's metadata is bounded as an HTTP request's headers are
		// (grpc-go takes 16 MiB): HTTP/2's SETTINGS_MAX_HEADER_LIST_SIZE,
		// which grpc-go clients heed (their call fails naming it); a
		// call over it from another client is reset (FRAME_SIZE_ERROR).
		grpc.MaxHeaderListSize(uint32(s.cfg.MaxHeaderBytes)),
		// One connection cannot open calls without bound: a client past
		// it waits (grpc-go) or is refused the stream (REFUSED_STREAM).
		grpc.MaxConcurrentStreams(uint32(s.cfg.GRPCMaxConcurrentStreams)),
		// Stop (at the end of shutdown_timeout_ms) waits for the handlers
		// to return, before the producers are closed.
		grpc.WaitForHandlers(true),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: time.Duration(s.cfg.IdleTimeoutMs) * time.Millisecond,
			Timeout:           grpcKeepaliveTimeout, // grpc-go's; also grpc_port's TCP_USER_TIMEOUT (grpcListener)
		}),
		// Clients may ping every 5 s, with calls open or none: grpc-go's
		// default (every 5 min, never without a call) sends GOAWAY
		// too_many_pings to clients with common keepalive settings
		// (grpc-go's and grpc-java's shortest, 10 s), ending their calls
		// Unavailable though their records may have been written.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             5 * time.Second,
			PermitWithoutStream: true,
		}),
		// A connection that has not finished its TLS handshake and
		// HTTP/2 preface has no call either: closed at idle_timeout_ms,
		// not grpc-go's 120 s.
		grpc.ConnectionTimeout(time.Duration(s.cfg.IdleTimeoutMs) * time.Millisecond),
		grpc.InTapHandle(callTap),
		grpc.ChainUnaryInterceptor(s.countUnary),
		grpc.ChainStreamInterceptor(s.countStream),
		grpc.ForceServerCodecV2(newWireCodec()),
		// HTTP/2 flow control: with the default 64 KiB windows a client
		// streaming batches of 20-30 KB is sent a WINDOW_UPDATE every
		// other request, a write here and a read there; 1 MiB (what one
		// connection may have sent and kproxy not yet read) makes it one
		// in ten or more: 0.55 to 0.40 us of the sender's CPU per record
		// on the benchmark (scripts/bench-batch.sh). Fixed windows turn
		// grpc's own sizing (BDP estimation) off.
		grpc.InitialWindowSize(1 << 20),
		grpc.InitialConnWindowSize(1 << 20),
	}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(loggedTLS{credentials.NewTLS(tlsCfg), &s.grpcLog}))
	}
	late := refusedAnswer(0, refuse(503, -1, s.readLateReason()))
	late.retryAfter = 1
	s.produceLate = status.Convert(answerError(&late))
	g := grpc.NewServer(opts...)
	g.RegisterService(kproxyService(), grpcService{s: s})
	g.RegisterService(s.cutUnary(&grpc_health_v1.Health_ServiceDesc), grpcHealth{s: s})
	reflection.Register(g)
	return g
}

// kafkaHeaderKey is the context key of a call's x-kafka-header-* metadata
// key (callTap).
type kafkaHeaderKey struct{}

// cutKey is the context key of a Produce call's cut (callTap).
type cutKey struct{}

// callTap notes in a call's context the first x-kafka-header-* key of its
// metadata, for callExt: read here from the transport's own map, where
// callExt could only copy the call's metadata to look. A call's context
// gets a cancel, its cut, which shutdown fires while a unary call (or
// Health/Watch) waits for its message (cutRead), or while another stream
// runs (countStream), reflection's: they carry no records.
// ProduceStream has none, nor Health/Watch once its request is read: they
// end themselves at shutdown, answering what they took.
func callTap(ctx context.Context, info *tap.Info) (context.Context, error) {
	for k := range info.Header { // lower-case keys
		if strings.HasPrefix(k, "x-kafka-header-") {
			ctx = context.WithValue(ctx, kafkaHeaderKey{}, k)
			break
		}
	}
	if info.FullMethodName == kproxypb.KProxy_ProduceStream_FullMethodName {
		return ctx, nil
	}
	ctx, cut := context.WithCancel(ctx)
	return context.WithValue(ctx, cutKey{}, cut), nil
}

// stopGRPC stops taking calls and waits for those under way, until ctx
// ends; then it closes their connections (their contexts are cancelled)
// and waits for their handlers.
func (s *Server) stopGRPC(ctx context.Context) {
	s.stopGRPCHandshakes()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("grpc calls still in flight at shutdown timeout; closing their connections", "in_flight", s.inFlight.Load())
		s.grpc.Stop()
		<-done
	}
	s.grpcReaders.Wait()
}

// stopGRPCHandshakes closes grpc_port's connections still in their
// handshake, which have no call: grpc-go's Stop and GracefulStop would
// wait for them until idle_timeout_ms (grpcListener.stop).
func (s *Server) stopGRPCHandshakes() {
	if l, ok := s.grpcLn.(*grpcListener); ok {
		l.stop()
	}
}

// grpcConnOf is the grpc_port connection of the call of ctx; nil when
// unknown.
func (s *Server) grpcConnOf(ctx context.Context) *grpcConn {
	l, ok := s.grpcLn.(*grpcListener)
	if !ok {
		return nil
	}
	return l.connOf(ctx)
}

func (s *Server) countUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if c := s.grpcConnOf(ctx); c != nil {
		c.callStarted()
		defer c.callEnded()
	}
	resp, err := handler(ctx, req)
	s.metrics.grpcRPCs.WithLabelValues(strings.TrimPrefix(info.FullMethod, "/"), status.Code(err).String()).Inc()
	return resp, err
}

func (s *Server) countStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if cut, ok := ss.Context().Value(cutKey{}).(context.CancelFunc); ok && info.FullMethod != grpc_health_v1.Health_Watch_FullMethodName {
		defer context.AfterFunc(s.drainCtx, cut)() // callTap; Watch's read only (cutUnary)
	}
	if c := s.grpcConnOf(ss.Context()); c != nil {
		c.callStarted()
		defer c.callEnded()
	}
	err := handler(srv, ss)
	s.metrics.grpcRPCs.WithLabelValues(strings.TrimPrefix(info.FullMethod, "/"), status.Code(err).String()).Inc()
	return err
}

// produce1 answers a Produce call, whose request is in j and whose ext
// fields are ext (produceHandler): a ProduceResponse for 200 and 207; any
// other status is a gRPC error (grpcCode) whose detail is the
// ProduceResponse without its results. It releases j.
func (s *Server) produce1(ctx context.Context, j *batchJob, ext callExt, acl *access, rule *clientRule) (any, error) {
	start := time.Now()
	defer j.release() // after the answer is encoded: it reads j's results
	a, err := s.produceRequest(ctx, j, ext, acl, rule)
	if err != nil {
		return nil, err
	}
	s.metrics.grpcAnswered("Produce", a.status, start)
	if err := answerError(&a); err != nil {
		return nil, err
	}
	return &wireResponse{b: a.appendTo(nil)}, nil
}

// produceRequest is Produce's answer under acl, the rules the call's
// client rule (nil: no clients) was found by before its message was read
// (produceHandler); an error only for a client that went away before its
// records were handed to Kafka (nothing written).
func (s *Server) produceRequest(ctx context.Context, j *batchJob, ext callExt, acl *access, rule *clientRule) (answer, error) {
	h, berr := s.readRequest(j)
	if berr != nil {
		return refusedAnswer(h.id, berr), nil
	}
	if berr := ext.refusal(s.ext.maxBytes); berr != nil {
		return refusedAnswer(h.id, berr), nil
	}
	withExtFields(j.recs, ext.headers)
	j.noSpool = h.noSpool
	n := len(j.recs)
	s.metrics.batchSize.Observe(float64(n))
	if berr = s.admitBatch(n); berr != nil {
		return refusedAnswer(h.id, berr), nil
	}
	defer func() { s.releaseCall(&j.call, n) }() // j.call: set once its records were handed over
	b := s.boundRPC(ctx, j)
	if berr = s.checkBatch(s.recordsDeadline(j), acl, rule, j.recs, time.Now(), s.spoolable(h.acks, h.atomic, h.noSpool)); berr != nil {
		b.end(true)
		return refusedAnswer(h.id, berr), nil
	}
	if err := ctx.Err(); err != nil {
		b.end(true)
		s.acl().giveBack(rule, n) // the client left: nothing written
		return answer{}, status.FromContextError(err).Err()
	}
	out := s.produceBatch(b.answer, h.acks, h.atomic, j)
	b.end(h.atomic || h.acks == 0 || j.call.left.Load() == 0)
	if out.givesBack() {
		s.acl().giveBack(rule, n)
	}
	return outcomeAnswer(h.id, out), nil
}

// authenticateRPC finds the call's client from its authorization
// metadata ("Basic …", as HTTP's header) by a's rules, as
// access.authenticate does.
func authenticateRPC(a *access, ctx context.Context) (*clientRule, verdict) {
	if a.clients == nil {
		return nil, verdict{}
	}
	var auth []byte
	if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) > 0 {
		auth = []byte(v[0])
	}
	return a.authenticate(auth)
}

// mdRequestID is the metadata of a call's request id: HTTP's X-Request-ID,
// read from the call and answered in its response header metadata.
const mdRequestID = "x-request-id"

// callExt is what a gRPC call's peer and metadata add, as an HTTP
// request's headers do (extFields): the ext fields as record headers, and
// the call's request id. A call's metadata is read once, when it starts:
// a stream's requests share it.
type callExt struct {
	// headers are the ext fields, in HTTP's order (ip, ua, rid, ck), for
	// every record of the call after its own (withExtFields): their
	// values are copied into one buffer, which the records share (kgo
	// only reads them).
	headers []kgo.RecordHeader
	// rid is the call's x-request-id, or a new one (a random UUID) when
	// rid is in ext_headers and the call has none; "": none.
	rid string
	// over is the bytes of the call's ua, rid and ck when they are more
	// than max_header_bytes (refusal); 0: within it.
	over int
	// kafkaHeader is an x-kafka-header-* metadata key of the call: a
	// record header asked for as over HTTP, which a gRPC record carries
	// itself (refusal); "": none.
	kafkaHeader string
}

// callExt reads the ext fields of the call of ctx:
//   - ip: the peer's address, or, when the peer is in trusted_proxies,
//     the address its x-forwarded-for metadata names, by HTTP's rule
//     (rpcClientIP);
//   - ua: the user-agent metadata as received (grpc-go's clients add
//     their own after the application's);
//   - rid: x-request-id, or a new one;
//   - ck: the cookie metadata, several joined with "; " as HTTP's Cookie
//     headers are.
//
// A stream's rid is its call's: one for all its requests, since the call's
// metadata, where x-request-id comes from and where it is answered, is
// sent once; a request's own id is ProduceRequest.id.
//
// Over HTTP, max_header_bytes bounds the headers ua, rid and ck come
// from; gRPC metadata may be far larger, and every record of the call
// gets a copy: a call whose ua, rid and ck are more than max_header_bytes
// gets none (over), and its requests are refused (refusal).
func (s *Server) callExt(ctx context.Context) callExt {
	e := &s.ext
	var x callExt
	x.kafkaHeader, _ = ctx.Value(kafkaHeaderKey{}).(string) // kafkaHeaderTap's
	if v := metadata.ValueFromIncomingContext(ctx, mdRequestID); len(v) > 0 && v[0] != "" {
		x.rid = v[0]
	} else if e.has(extRID) {
		var b [36]byte
		x.rid = string(newUUID(&b))
	}
	if e.on == 0 {
		return x
	}
	var ip netip.Addr
	var ipText [64]byte
	var ua string
	var ck []string
	size, ipLen := 0, 0
	if e.has(extIP) {
		ip = e.rpcClientIP(ctx)
		ipLen = len(ip.AppendTo(ipText[:0]))
		size += ipLen
	}
	if e.has(extUA) {
		if v := metadata.ValueFromIncomingContext(ctx, "user-agent"); len(v) > 0 {
			ua = v[0]
			size += len(ua)
		}
	}
	if e.has(extRID) {
		size += len(x.rid)
	}
	if e.has(extCK) {
		ck = metadata.ValueFromIncomingContext(ctx, "cookie")
		for _, c := range ck {
			size += len("; ") + len(c)
		}
	}
	if meta := size - ipLen; meta > e.maxBytes {
		x.over = meta
		return x
	}
	buf := make([]byte, 0, size) // never grown: the values stay put
	x.headers = make([]kgo.RecordHeader, 0, 4)
	if e.has(extIP) {
		start := len(buf)
		buf = ip.AppendTo(buf)
		x.headers = append(x.headers, kgo.RecordHeader{Key: "ip", Value: buf[start:len(buf):len(buf)]})
	}
	if ua != "" {
		start := len(buf)
		buf = append(buf, ua...)
		x.headers = append(x.headers, kgo.RecordHeader{Key: "ua", Value: buf[start:len(buf):len(buf)]})
	}
	if e.has(extRID) {
		start := len(buf)
		buf = append(buf, x.rid...)
		x.headers = append(x.headers, kgo.RecordHeader{Key: "rid", Value: buf[start:len(buf):len(buf)]})
	}
	if len(ck) > 0 {
		start := len(buf)
		for _, c := range ck {
			if c = strings.Trim(c, " \t\r"); c != "" {
				buf = appendCookie(buf, start, c)
			}
		}
		if len(buf) > start {
			x.headers = append(x.headers, kgo.RecordHeader{Key: "ck", Value: buf[start:len(buf):len(buf)]})
		}
	}
	return x
}

// refusal refuses a request of the call when it has x-kafka-header-*
// metadata (400), or when its ext fields are more than max_header_bytes
// (callExt): 413, as a record too large is.
func (x callExt) refusal(max int) *batchError {
	if x.kafkaHeader != "" {
		return refuse(400, -1, "metadata "+x.kafkaHeader+": x-kafka-header-* is HTTP's /commit; a gRPC record carries its own headers")
	}
	if x.over == 0 {
		return nil
	}
	return refuse(413, -1, "the call's user-agent, x-request-id and cookie metadata ("+strconv.Itoa(x.over)+
		" bytes), which ext_headers copies into every record, are more than max_header_bytes ("+strconv.Itoa(max)+")")
}

// echo puts x's request id, when it has one, in the response header
// metadata of the call of ctx (sent with its answer, a refusal's
// included).
func (x callExt) echo(ctx context.Context) {
	if x.rid != "" {
		grpc.SetHeader(ctx, metadata.MD{mdRequestID: {x.rid}})
	}
}

// rpcClientIP is the ip ext field of the call of ctx: its peer's address,
// or, when the peer is in trusted_proxies, the address its
// x-forwarded-for metadata names (rightmostUntrusted, HTTP's rule: several
// values are one list, in order). An untrusted peer's x-forwarded-for is
// not read.
func (e *extFields) rpcClientIP(ctx context.Context) netip.Addr {
	var from netip.Addr
	if p, ok := peer.FromContext(ctx); ok {
		from = addrOf(p.Addr)
	}
	if len(e.trusted) == 0 || !isTrusted(from, e.trusted) {
		return from
	}
	return rightmostUntrusted(from, metadata.ValueFromIncomingContext(ctx, "x-forwarded-for"), e.trusted)
}

// addrOf is the IP address of a peer's network address, as HTTP's
// RemoteIP gives it (IPv4 unmapped, no zone); invalid when it has none.
func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

// rpcBound is what a gRPC call's deadline makes of a request's waits.
type rpcBound struct {
	answer        context.Context // the wait for the records ends with it
	cancelAnswer  context.CancelFunc
	cancelLookups context.CancelFunc // nil: the look-ups' deadline is produce_timeout_ms
}

// boundRPC bounds a request's waits by ctx's deadline (its client's) when
// that ends before produce_timeout_ms from the request's arrival would:
// its topics' look-ups end early enough that their refusal reaches the
// client in time (j's deadline, set then), and the wait for Kafka's
// answers (answer) ends before the deadline (answerMargin), the records
// not answered then being answered 504. The records themselves keep
// produce_timeout_ms from their arrival (startProduce).
func (s *Server) boundRPC(ctx context.Context, j *batchJob) rpcBound {
	dl, ok := ctx.Deadline()
	if !ok {
		return rpcBound{answer: ctx, cancelAnswer: func() {}}
	}
	left := time.Until(dl)
	margin := min(answerMargin, left/10)
	grace := min(answerGrace, left/5)
	b := rpcBound{}
	b.answer, b.cancelAnswer = context.WithDeadline(ctx, dl.Add(-margin))
	arrival, _ := s.arrivalDeadline(j).Deadline()
	if by := left - margin - grace; by < time.Until(arrival) {
		j.deadline, b.cancelLookups = context.WithTimeout(context.Background(), by)
		j.bound = "the request's deadline"
	}
	return b
}

// end releases b's contexts; j's deadline only when every record was
// answered (done): a record still in a Kafka client was handed to it under
// that deadline, and keeps it until it passes. An atomic batch is done
// once answered: committed, or failed and aborted (the abort may run after
// the answer, and fails what its client still holds: txn.go).
func (b rpcBound) end(done bool) {
	b.cancelAnswer()
	if b.cancelLookups != nil && done {
		b.cancelLookups()
	}
}

// grpcCode is the gRPC status of an answer with HTTP status code.
func grpcCode(code int) codes.Code {
	switch code {
	case 200, 202, 207:
		return codes.OK // 202: spooled; 207: each result carries its own status
	case 400:
		return codes.InvalidArgument
	case 401:
		return codes.Unauthenticated
	case 403:
		return codes.PermissionDenied
	case 404:
		return codes.NotFound
	case 413, 429:
		return codes.ResourceExhausted
	case 502, 503:
		return codes.Unavailable // not written
	case 504:
		return codes.DeadlineExceeded // may have been written
	}
	return codes.Internal
}

// answerError is a unary answer's error: nil for 200 and 207, else the
// status of grpcCode with the response as its detail, without its
// results: every record got the status, and a detail travels in a trailer
// (grpc-status-details-bin), which other gRPC implementations cap at a few
// kilobytes — 10,000 results would not fit.
func answerError(a *answer) error {
	code := grpcCode(a.status)
	if code == codes.OK {
		return nil
	}
	st := status.New(code, a.reason)
	if d, err := st.WithDetails(a.message()); err == nil {
		st = d
	}
	return st.Err()
}

// grpcService is kafkahttpwrapper.v1.KProxy: Produce is served by
// produceHandler (kproxyService), ProduceStream here.
type grpcService struct {
	kproxypb.UnimplementedKProxyServer
	s *Server
}

// ProduceStream answers each request of the stream with a response
// carrying its id, in the order of the requests (produceStream).
func (g grpcService) ProduceStream(stream grpc.BidiStreamingServer[kproxypb.ProduceRequest, kproxypb.ProduceResponse]) error {
	s := g.s
	s.metrics.grpcStreams.Inc()
	defer s.metrics.grpcStreams.Dec()
	x := s.callExt(stream.Context())
	if x.rid != "" {
		// Sent now, for a client that reads the header before its
		// first answer; not sent when the stream broke (its Recv
		// fails then). Through the call's transport stream, as
		// Produce's echo is: the stream's SendHeader refuses an id
		// that is not printable ASCII, which Produce and HTTP answer
		// as received (and the records carry).
		grpc.SendHeader(stream.Context(), metadata.MD{mdRequestID: {x.rid}})
	}
	a := s.acl()
	rule, v := authenticateRPC(a, stream.Context())
	if v.code != 0 {
		return status.Error(codes.Unauthenticated, v.reason)
	}
	st := &produceStream{s: s, stream: stream, ctx: stream.Context(), rule: rule, acl: a, ext: x, client: -1,
		answers: make(chan *streamItem, streamWindow), sendErr: make(chan error, 1), sentOne: make(chan struct{}, 1)}
	return st.run()
}

// produceStream is one ProduceStream call. Four goroutines:
//   - a reader receives the requests, each into a batch job, and hands
//     them over;
//   - the handler's goroutine (take) checks each request and hands its
//     records to their kgo client, in the order of the stream, at most
//     streamWindow requests ahead of the answers;
//   - an answerer (answer) waits for each request's records, in order,
//     and a sender (send) sends its response.
//
// Per-key order across requests: a request's records are handed to kgo
// only after the previous request's were, and kgo keeps a partition's
// records in the order it got them (produceBatch), so the records of a
// key are written in the order of the stream, whatever the requests they
// came in; a record that fails leaves a gap, as in one batch. Requests
// that go to another client (acks -1 after acks 0 or 1, or back) wait
// until every earlier request is answered and its client holds none of
// their records (a record answered 504 may be written later), and an
// atomic request runs alone, after every earlier one was (it has a
// transactional client of its own). acks=0 records, answered before
// Kafka has them, count as held until Kafka's client lets them go.
type produceStream struct {
	s      *Server
	stream grpc.BidiStreamingServer[kproxypb.ProduceRequest, kproxypb.ProduceResponse]
	ctx    context.Context
	rule   *clientRule // the stream's client, by acl's rules (start's)
	acl    *access     // the rules rule was found by
	ext    callExt     // the stream's ext fields, for every record of every request
	client int         // the kgo client of the last request started: 0 acks 0/1, 1 acks -1, 2 atomic; -1 none

	out     []*streamItem    // requests started and not known to be answered, in order (take's)
	held    []chan struct{}  // settled of the requests of the current client whose records kgo may still hold (take's)
	answers chan *streamItem // to the answerer, in order
	sendErr chan error       // the answerer's first failure to send
	sentOne chan struct{}    // an answer sent (awaitSent), capacity 1
}

// streamItem is one request of a stream, from its start to its answer.
type streamItem struct {
	at       time.Time // read
	answered bool      // a is the answer, known at the start: nothing to await
	a        answer
	job      *batchJob   // nil: refused (released at once)
	call     *batchCall  // nil: answered at the start
	n        int         // records admitted, given back once answered
	rule     *clientRule // the client the records were counted against
	bound    rpcBound
	done     chan struct{} // closed once answered (sent, or not: the stream broke)
}

// streamRequest is a request read: its bytes in job's body.
type streamRequest struct {
	job *batchJob
	at  time.Time
}

func (st *produceStream) run() error {
	reqs := make(chan streamRequest)
	recvErr := make(chan error, 1)
	quit := make(chan struct{})
	// The reader may be in RecvMsg when the handler returns; RecvMsg
	// returns then (grpc ends the stream). The server waits for it at
	// shutdown.
	st.s.grpcReaders.Go(func() {
		for {
			j := getBatchJob()
			if err := st.stream.RecvMsg(j); err != nil {
				j.release()
				recvErr <- err
				return
			}
			// The records' deadline runs from start, not from here: a
			// request read waits for the stream's window as long as
			// its client leaves answers unread (take).
			select {
			case reqs <- streamRequest{j, time.Now()}:
			case <-quit:
				j.release() // read, never started: not written (the stream ended)
				return
			}
		}
	})
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		st.answer()
	}()
	err := st.take(reqs, recvErr)
	close(quit)
	close(st.answers)
	<-answered // every request started is answered before the stream's status
	return err
}

// take starts the requests as they come, until the client closes its
// side (nil: the stream ends OK once the answers are sent), the stream
// breaks, an answer cannot be sent, or kproxy shuts down (UNAVAILABLE:
// the requests not answered were not written).
func (st *produceStream) take(reqs <-chan streamRequest, recvErr <-chan error) error {
	for {
		select {
		case r := <-reqs:
			for st.prune(); len(st.out) >= streamWindow; st.prune() {
				if !st.await(st.out[0].done) {
					r.job.release() // read, never started: not written
					return errStreamShutdown
				}
			}
			it := st.start(r)
			st.out = append(st.out, it)
			st.answers <- it // never blocks: it holds at most streamWindow items, all in out
		case err := <-recvErr:
			if err == io.EOF {
				return nil
			}
			return err
		case err := <-st.sendErr:
			return err
		case <-st.s.drain:
			return errStreamShutdown
		}
	}
}

// errStreamShutdown ends a stream at shutdown.
var errStreamShutdown = status.Error(codes.Unavailable, "kproxy is shutting down; the requests of this stream not answered were not written")

// await waits until ch is closed (a request answered); false when kproxy
// shuts down first: a client that reads no answers must not hold the
// stream's requests, nor the shutdown, until they are sent.
func (st *produceStream) await(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-st.s.drain:
		return false
	}
}

// prune drops the answered requests from the head of out.
func (st *produceStream) prune() {
	for len(st.out) > 0 {
		select {
		case <-st.out[0].done:
			st.out[0] = nil
			st.out = st.out[1:]
		default:
			return
		}
	}
}

// waitOldest waits until the oldest request out is answered; false when
// none is out, or kproxy shuts down first.
func (st *produceStream) waitOldest() bool {
	st.prune()
	if len(st.out) == 0 || !st.await(st.out[0].done) {
		return false
	}
	st.prune()
	return true
}

// hold notes a started request's settled, dropping those closed already.
func (st *produceStream) hold(settled chan struct{}) {
	for len(st.held) > 0 {
		select {
		case <-st.held[0]:
			st.held[0] = nil
			st.held = st.held[1:]
			continue
		default:
		}
		break
	}
	if n := len(st.held); n > 0 && n == cap(st.held) {
		// Full: drop the closed ones behind the head too (a head kgo
		// holds for long would keep them all), and grow only when
		// that frees less than half, so that each note is looked at
		// a bounded number of times.
		kept := st.held[:0]
		for _, ch := range st.held {
			select {
			case <-ch:
			default:
				kept = append(kept, ch)
			}
		}
		clear(st.held[len(kept):])
		if len(kept) > n/2 {
			kept = append(make([]chan struct{}, 0, 2*n), kept...)
		}
		st.held = kept
	}
	st.held = append(st.held, settled)
}

// waitSettled waits until kgo no longer holds any record of the requests
// noted by hold (every one answered by Kafka or failed: none can be
// written later); the refusal of the waiting request when its deadline
// passed, the stream ended, or kproxy began to shut down first (those
// still held stay noted).
func (st *produceStream) waitSettled(deadline context.Context) *batchError {
	for i, ch := range st.held {
		select {
		case <-ch:
			st.held[i] = nil
			continue
		case <-deadline.Done():
			st.held = st.held[i:]
			e := refuse(503, -1, "an earlier request's records of this stream were still in kafka's client "+
				"(answered 504, or 200 at acks=0: they may yet be written) at this request's deadline; this request, at another acks level, "+
				"would have overtaken them and was not written")
			e.retryAfter = 1 // as every 503
			return e
		case <-st.ctx.Done():
			st.held = st.held[i:]
			return refuse(503, -1, "the stream ended while an earlier request's records were still in kafka's client; this request was not written")
		case <-st.s.drain:
			st.held = st.held[i:]
			return refuseShuttingDown()
		}
	}
	st.held = st.held[:0]
	return nil
}

// waitAll waits until every request out is answered, or kproxy shuts
// down.
func (st *produceStream) waitAll() {
	for st.waitOldest() {
	}
}

// start checks request r and hands its records to Kafka, or answers it at
// once (refused, acks=0, atomic).
func (st *produceStream) start(r streamRequest) *streamItem {
	s, j := st.s, r.job
	it := &streamItem{at: r.at, done: make(chan struct{})}
	refused := func(id uint64, e *batchError) *streamItem {
		j.release()
		it.a, it.answered = refusedAnswer(id, e), true
		return it
	}
	h, berr := s.readRequest(j)
	// A client removed (or whose secret changed) by a reload is refused
	// 401 before any of the request's own checks, as a new call is.
	if v := st.reauthenticate(); v.code != 0 {
		return refused(h.id, refuse(v.code, -1, v.reason))
	}
	if berr != nil {
		return refused(h.id, berr)
	}
	if berr := st.ext.refusal(s.ext.maxBytes); berr != nil {
		return refused(h.id, berr)
	}
	withExtFields(j.recs, st.ext.headers)
	j.noSpool = h.noSpool
	n := len(j.recs)
	s.metrics.batchSize.Observe(float64(n))
	client := 0
	switch {
	case h.atomic:
		client = 2
	case h.acks == 2:
		client = 1
	}
	// The waits for this stream's own earlier answers — those of every
	// earlier request before another Kafka client, and of the oldest for
	// room in req_pool_size — last as long as the client leaves them
	// unread, as the wait for the window does: the records' deadline
	// starts after them. Started before, it ran out in them, and the
	// records handed over then were failed at once by Kafka's client with
	// every record queued behind them in their partition: other clients'
	// with time left, acks=0 ones answered 200.
	if h.atomic || (client != st.client && st.client != -1) {
		// No order between two clients: one after the other. An earlier
		// record answered 504 may still be written by its client: this
		// request's records wait for it (within their deadline, from
		// here), or a key's records could swap. Room is taken after
		// that wait, not held through it.
		st.waitAll()
		j.timeout = s.deadlines.get()
		wait, cancel := s.recordsDeadline(j), context.CancelFunc(nil)
		if dl, ok := st.ctx.Deadline(); ok {
			// Answered before the stream's deadline, as boundRPC
			// bounds a request's records.
			wait, cancel = context.WithDeadline(wait, dl.Add(-min(answerMargin, time.Until(dl)/10)))
		}
		berr = st.waitSettled(wait)
		if cancel != nil {
			cancel()
		}
		if berr != nil {
			return refused(h.id, berr)
		}
	}
	select {
	case <-s.drain: // it ended a wait for the earlier requests (await)
		return refused(h.id, refuseShuttingDown())
	default:
	}
	// A stream held back by req_pool_size, or by max_body_bytes_in_flight,
	// waits for its own requests first: they free room (none is out after
	// waitAll). Its body counts from here, not from its read, and neither
	// is held through a wait: the waits for the stream's own answers (the
	// window, another client's, these) last as long as its client leaves
	// them unread, and a few such streams would hold the bodies' budget of
	// every client.
	for {
		if berr = s.admitBatch(n); berr == nil {
			if berr = s.holdMessage(j); berr != nil {
				s.releaseBatch(n)
			}
		}
		if berr == nil || berr.status != 503 || !st.waitOldest() {
			break
		}
	}
	if berr != nil && berr.status == 503 {
		select {
		case <-s.drain: // it ended the wait for room (waitOldest)
			berr = refuseShuttingDown()
		default:
		}
	}
	if berr != nil {
		return refused(h.id, berr)
	}
	if j.timeout == nil {
		j.timeout = s.deadlines.get() // the records' deadline runs from here
	}
	st.client = client
	// Again after the waits above: the request's topics and rate limit
	// are checked by the rules its client was last found by.
	if v := st.reauthenticate(); v.code != 0 {
		s.releaseBatch(n)
		return refused(h.id, refuse(v.code, -1, v.reason))
	}
	it.rule = st.rule // for the answerer, which gives records back to it
	b := s.boundRPC(st.ctx, j)
	if berr = s.checkBatch(s.recordsDeadline(j), st.acl, st.rule, j.recs, time.Now(), s.spoolable(h.acks, h.atomic, h.noSpool)); berr != nil {
		b.end(true)
		s.releaseBatch(n)
		return refused(h.id, berr)
	}
	if st.ctx.Err() != nil {
		// The client left (while this request waited for room, or for
		// the window): nothing written, as for Produce.
		b.end(true)
		s.releaseBatch(n)
		s.acl().giveBack(st.rule, n)
		return refused(h.id, refuse(503, -1, "the stream ended before this request's records were handed to kafka; they were not written"))
	}
	var out batchOutcome
	if h.atomic {
		out = s.produceAtomic(b.answer, j)
	} else {
		it.call, out = s.startProduce(h.acks, j)
		switch {
		case it.call != nil:
			st.hold(it.call.settled)
			it.call.watchSpool(b.answer) // not when the answerer comes to it
		case out.settled != nil:
			st.hold(out.settled) // acks=0 records, answered already, still in kgo
		}
	}
	it.a.id, it.job, it.n, it.bound = h.id, j, n, b
	if it.call == nil {
		// Answered now (acks=0, atomic); the answerer sends it and then
		// releases j, whose results it reads.
		it.a, it.answered = outcomeAnswer(h.id, out), true
		if out.givesBack() {
			s.acl().giveBack(st.rule, n)
		}
	}
	return it
}

// refuseShuttingDown refuses a stream request whose wait (for earlier
// answers, for room) the shutdown ended.
func refuseShuttingDown() *batchError {
	e := refuse(503, -1, "kproxy is shutting down; this request was not written")
	e.retryAfter = 1 // as every 503
	return e
}

// reauthenticate finds the stream's client again when the clients were
// reloaded (SIGHUP) since it was last found, by the rules now in force,
// so that a client removed or whose secret changed by a reload sends no
// more records on a stream it opened before. A refusal leaves the rules
// the stream was last checked by in place: each later request is checked
// again.
func (st *produceStream) reauthenticate() verdict {
	a := st.s.acl()
	if a == st.acl {
		return verdict{}
	}
	rule, v := authenticateRPC(a, st.ctx)
	if v.code == 0 {
		st.rule, st.acl = rule, a
	}
	return v
}

// answer answers the requests in the order they were started: it waits
// for the records of each (finishProduce), encodes its response and gives
// its records' place in req_pool_size back; a sender (send) sends the
// responses, in order. A client slow to read its answers, or that
// stopped, so holds its stream (streamWindow requests answered, not sent)
// and not req_pool_size, as an HTTP client's answer not yet written does
// not. After a failure to send (the stream broke) it still waits for each,
// giving their memory back, without sending.
func (st *produceStream) answer() {
	s := st.s
	sends := make(chan streamSend, streamWindow) // never full: each holds an item of out
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		st.send(sends)
	}()
	for it := range st.answers {
		if !it.answered {
			out := s.finishProduce(it.bound.answer, it.call)
			it.a = outcomeAnswer(it.a.id, out)
			if out.givesBack() {
				s.acl().giveBack(it.rule, it.n)
			}
		}
		bp := answerPool.Get().(*[]byte) // the codec copies it
		*bp = it.a.appendTo((*bp)[:0])
		if it.job != nil { // encoded: j's results are no longer read
			it.bound.end(it.call == nil || it.call.left.Load() == 0)
			s.releaseCall(&it.job.call, it.n)
			it.job.release()
			it.job, it.call = nil, nil
		}
		sends <- streamSend{it: it, b: bp}
	}
	close(sends)
	st.awaitSent(sent)
}

// awaitSent waits for the sender to send the answers left (sent). At
// shutdown, every record of the stream is settled here (answered, or
// failed by Kafka's client): a client that reads no answers, whose HTTP/2
// window is full, would hold the send (grpc-go's have no write timeout),
// the stream and the shutdown until shutdown_timeout_ms. When no answer
// went out for max(1 s, write_timeout_ms), those left are given up: the
// stream's connection is closed, once no other call on it is under way
// (maybeCut). A client whose reads let kproxy write to it at least that
// often (its HTTP/2 window opened again) gets them all.
func (st *produceStream) awaitSent(sent <-chan struct{}) {
	select {
	case <-sent:
		return
	case <-st.s.drain:
	}
	d := st.s.sendWait()
	wait := time.NewTimer(d)
	defer wait.Stop()
	for stalled := false; !stalled; {
		select {
		case <-sent:
			return
		case <-st.sentOne:
			wait.Reset(d)
		case <-wait.C:
			stalled = true
		}
	}
	c := st.s.grpcConnOf(st.ctx)
	if c == nil {
		<-sent // Stop, at shutdown_timeout_ms, closes it
		return
	}
	st.s.log.Warn("grpc stream: answers not read by its client at shutdown; its connection closed once no other call on it is under way",
		"client", c.Conn.RemoteAddr().String())
	c.unread(1)
	<-sent
	c.unread(-1)
}

// streamSend is an answer encoded, to send.
type streamSend struct {
	it *streamItem
	b  *[]byte
}

// send sends the answers in order; after a failure it only counts them.
func (st *produceStream) send(sends <-chan streamSend) {
	s := st.s
	failed := false
	for x := range sends {
		if !failed {
			if err := st.stream.SendMsg(&wireResponse{b: *x.b}); err != nil {
				failed = true
				st.sendErr <- err
			} else {
				select {
				case st.sentOne <- struct{}{}:
				default:
				}
			}
		}
		if cap(*x.b) <= maxPooledBody {
			answerPool.Put(x.b)
		}
		s.metrics.grpcAnswered("ProduceStream", x.it.a.status, x.it.at)
		x.it.a = answer{}
		close(x.it.done)
	}
}

// grpcHealth is grpc.health.v1.Health: SERVING while GET /health answers
// 200 (healthStatus: a Kafka broker reachable, or the spool taking
// records); NOT_SERVING while it answers 503 (none reachable and no
// spool, the spool full or its disk refusing writes, shutting down). It knows the server as a whole ("") and
// kafkahttpwrapper.v1.KProxy.
type grpcHealth struct {
	grpc_health_v1.UnimplementedHealthServer
	s *Server
}

func (h grpcHealth) status(service string) grpc_health_v1.HealthCheckResponse_ServingStatus {
	if service != "" && service != kproxypb.KProxy_ServiceDesc.ServiceName {
		return grpc_health_v1.HealthCheckResponse_SERVICE_UNKNOWN
	}
	if code, _ := h.s.healthStatus(); code != 200 {
		return grpc_health_v1.HealthCheckResponse_NOT_SERVING
	}
	return grpc_health_v1.HealthCheckResponse_SERVING
}

func (h grpcHealth) Check(_ context.Context, req *grpc_health_v1.HealthCheckRequest) (*grpc_health_v1.HealthCheckResponse, error) {
	st := h.status(req.GetService())
	if st == grpc_health_v1.HealthCheckResponse_SERVICE_UNKNOWN {
		return nil, status.Error(codes.NotFound, "unknown service "+strconv.Quote(req.GetService()))
	}
	return &grpc_health_v1.HealthCheckResponse{Status: st}, nil
}

func (h grpcHealth) List(context.Context, *grpc_health_v1.HealthListRequest) (*grpc_health_v1.HealthListResponse, error) {
	st := h.status("")
	return &grpc_health_v1.HealthListResponse{Statuses: map[string]*grpc_health_v1.HealthCheckResponse{
		"": {Status: st}, kproxypb.KProxy_ServiceDesc.ServiceName: {Status: st},
	}}, nil
}

// Watch sends the status now and each change, looked at every second,
// until the client leaves; at shutdown it sends NOT_SERVING and ends.
func (h grpcHealth) Watch(req *grpc_health_v1.HealthCheckRequest, stream grpc.ServerStreamingServer[grpc_health_v1.HealthCheckResponse]) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := grpc_health_v1.HealthCheckResponse_ServingStatus(-1)
	for {
		st := h.status(req.GetService())
		select {
		case <-h.s.drain:
			st = grpc_health_v1.HealthCheckResponse_NOT_SERVING
		default:
		}
		if st != last {
			if err := stream.Send(&grpc_health_v1.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		select {
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		case <-h.s.drain:
			if last != grpc_health_v1.HealthCheckResponse_NOT_SERVING {
				stream.Send(&grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_NOT_SERVING})
			}
			return nil
		case <-tick.C:
		}
	}
}
