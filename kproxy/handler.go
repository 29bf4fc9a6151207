package kproxy

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/jsonscan"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/msgpackscan"
)

// maxPooledBody is the largest body buffer kept for reuse; larger ones are
// left to the garbage collector so one big request does not pin memory.
const maxPooledBody = 64 << 10

// recordOverhead is what a record adds to its key and value in a batch of
// its own, at most, as kgo counts it: the batch header with its length
// prefixes (67 bytes), the record's length, attributes, deltas and three
// length varints (23). Checked here, a record never meets kgo's own limit,
// which would fail it after other records' requests may be out.
const recordOverhead = 67 + 23

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	// An answer given as kproxy stops is the connection's last: fasthttp
	// closes it after, on this goroutine (never idle, so never closed from
	// another), and what the client pipelined behind is drained, not
	// reset, so that the answers it has not read yet reach it.
	s.bodyRead(ctx) // max_body_bytes_in_flight
	defer func() {
		s.bodyDone(ctx) // the body was read, and used
		if s.closing.Load() {
			ctx.SetConnectionClose()
			lingerAtStop(ctx.Conn())
		}
	}()
	if ambiguousLength(ctx) {
		// Whatever the path, nothing more is read from the connection:
		// what follows may be a request a proxy in front never saw.
		// /commit and /batch refuse the request (checkCommitHead,
		// checkBatchHead).
		ctx.SetConnectionClose()
		lingerOnClose(ctx.Conn()) // what the client sent on is read and dropped: the answer is not lost to a reset
	}
	switch string(ctx.Path()) {
	case "/commit":
		s.requestID(ctx)
		now := arrival(ctx)
		code := s.commit(ctx, now)
		s.metrics.observe(code, now)
	case "/batch":
		start := time.Now()
		s.requestID(ctx)
		code := s.batch(ctx)
		s.metrics.observeBatch(code, start)
	case "/health":
		code, text := s.healthStatus()
		ctx.Error(text+"\n", code)
	default:
		ctx.Error("no such endpoint; records go to POST /commit?topic=T&key=K&acks=N or POST /batch?acks=N\n", fasthttp.StatusNotFound)
	}
}

// commitHead is what a /commit request asks for in its line and headers.
type commitHead struct {
	topic   []byte
	rule    *clientRule // the client (access.authenticate); nil: no clients configured
	acks    int
	noSpool bool
}

// checkCommitHead checks what /commit reads from a request's line and
// headers, before its body: the method, the parameters, the client's
// credentials, the topic's name and whether the client may write to it.
// A request refused is answered (code); else h is what it asks for.
func (s *Server) checkCommitHead(ctx *fasthttp.RequestCtx) (h commitHead, code int) {
	if ambiguousLength(ctx) {
		return h, fail(ctx, fasthttp.StatusBadRequest, ambiguousLengthReason)
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		return h, fail(ctx, fasthttp.StatusMethodNotAllowed, "use POST")
	}
	if hasFragment(ctx) {
		return h, fail(ctx, fasthttp.StatusBadRequest, fragmentReason)
	}
	args := ctx.QueryArgs()
	if args.Len() > 1 {
		if name := repeatedParam(args); name != "" {
			return h, fail(ctx, fasthttp.StatusBadRequest, name+" given more than once")
		}
	}
	if name, known := miscasedParam(args); name != "" {
		return h, fail(ctx, fasthttp.StatusBadRequest, "unknown parameter "+strconv.Quote(name)+": did you mean "+strconv.Quote(known)+"?")
	}
	topicB := args.Peek("topic")
	if len(topicB) == 0 {
		return h, fail(ctx, fasthttp.StatusBadRequest, "missing topic parameter")
	}
	if reason := checkTopicName(topicB); reason != "" {
		return h, fail(ctx, fasthttp.StatusBadRequest, reason)
	}
	// Credentials first (401), as /batch and gRPC check them: then the
	// topic (403).
	internal := len(topicB) > 1 && topicB[0] == '_' && topicB[1] == '_'
	var rule *clientRule
	if a := s.acl(); a.active() {
		var v verdict
		if rule, v = a.authenticate(ctx.Request.Header.Peek("Authorization")); v.code == 0 && !internal {
			v = a.permit(rule, string(topicB))
		}
		if v.code != 0 {
			if v.code == fasthttp.StatusUnauthorized {
				ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="kproxy"`)
			}
			return h, fail(ctx, v.code, v.reason)
		}
	}
	if internal {
		return h, fail(ctx, fasthttp.StatusForbidden, "kafka-internal topics (starting with __) are not writable")
	}
	acksB := args.Peek("acks")
	acks, ok := acksIndex(acksB)
	if !ok || (len(acksB) == 0 && args.Has("acks")) { // "acks=" says something, but not which
		return h, fail(ctx, fasthttp.StatusBadRequest, "acks must be 0, 1 or -1")
	}
	noSpool, reason := spoolParam(args)
	if reason != "" {
		return h, fail(ctx, fasthttp.StatusBadRequest, reason)
	}
	if reason := contentCoding(ctx); reason != "" {
		return h, fail(ctx, fasthttp.StatusUnsupportedMediaType, reason)
	}
	return commitHead{topic: topicB, rule: rule, acks: acks, noSpool: noSpool}, 0
}

// arrival is when the request arrived: fasthttp's server reads the clock
// just before calling the handler. A RequestCtx prepared by Init (a custom
// server, the handler benchmarks) carries no time: the clock is read now.
func arrival(ctx *fasthttp.RequestCtx) time.Time {
	if t := ctx.Time(); !t.IsZero() {
		return t
	}
	return time.Now()
}

// commit writes the request's body to Kafka and answers with the status.
// now is the request's arrival.
func (s *Server) commit(ctx *fasthttp.RequestCtx, now time.Time) (code int) {
	// The record's deadline runs from the request's arrival: the topic's
	// look-up (a topic named for the first time) is part of it.
	dl := s.deadlines.at(now)
	var lookedUp context.Context // spool_after_ms of a look-up made before the body
	if ctx.Request.MayContinue() {
		if d, ok := ctx.UserValue(expectDeadline{}).(context.Context); ok {
			dl = d // from its headers' arrival: the topic was looked up then (expectCommit)
		}
		lookedUp, _ = ctx.UserValue(expectSpoolAfter{}).(context.Context)
	}
	h, code := s.checkCommitHead(ctx)
	if code != 0 {
		return code
	}
	args, topicB, rule, acks, noSpool := ctx.QueryArgs(), h.topic, h.rule, h.acks, h.noSpool
	body := ctx.PostBody()
	if code := s.checkBody(ctx, body); code != 0 {
		return code
	}
	hp, reason := s.planHeaders(ctx)
	if reason != "" {
		return fail(ctx, fasthttp.StatusBadRequest, reason)
	}

	size := len(body) + len(args.Peek("key")) + recordOverhead + hp.size
	if size > s.cfg.MaxMessageBytes {
		return fail(ctx, fasthttp.StatusRequestEntityTooLarge, tooLarge(size, hp.size, "max_message_bytes", s.cfg.MaxMessageBytes))
	}

	if n := s.inFlight.Add(1); n > int64(s.cfg.ReqPoolSize) {
		s.inFlight.Add(-1)
		ctx.Response.Header.Set("Retry-After", "1")
		return fail(ctx, fasthttp.StatusServiceUnavailable, "overloaded: req_pool_size requests in flight")
	}
	defer s.inFlight.Add(-1)

	topic, _, err := s.topicFor(dl, topicB, s.spoolable(acks, false, noSpool), lookedUp)
	if err != nil {
		// A metadata or describe-configs request, perhaps cut by the
		// deadline: nothing written.
		code, reason := produceStatus(err, sendTrace{})
		return s.kafkaFail(ctx, code, reason, string(topicB), err)
	}
	if size > int(topic.maxBytes) {
		return fail(ctx, fasthttp.StatusRequestEntityTooLarge, tooLarge(size, hp.size, "the topic's max.message.bytes", int(topic.maxBytes)))
	}
	if len(args.Peek("key")) == 0 {
		if _, refused := s.check.refusesKeyless(dl, topic, s.lookupTimeout(s.spoolable(acks, false, noSpool), nil)); refused {
			return fail(ctx, fasthttp.StatusBadRequest, keylessCompacted(topic.name))
		}
	}
	if reason := lateReason(dl, "for its topic or, after 100 Continue, its body"); reason != "" {
		ctx.Response.Header.Set("Retry-After", "1")
		return fail(ctx, fasthttp.StatusServiceUnavailable, reason)
	}
	if rule != nil {
		// The record counts once its request passed the checks, as a
		// batch's do (checkBatch): one refused before is not in Kafka.
		// By the client's rule as found on arrival, whatever a reload
		// stored meanwhile (its topic looked up).
		if v, _ := s.acl().take(rule, 1, now); v.code != 0 {
			ctx.Response.Header.Set("Retry-After", strconv.Itoa(v.retryAfter))
			return fail(ctx, v.code, v.reason)
		}
		defer func() {
			if code == fasthttp.StatusServiceUnavailable { // the record is not in Kafka
				s.acl().giveBack(rule, 1)
			}
		}()
	}
	if acks == 0 {
		// acks=0 records outlive their request: they are bounded apart,
		// so that kgo's buffer never fills and Produce never blocks.
		if n := s.acks0Out.Add(1); n > int64(s.cfg.ReqPoolSize) {
			s.acks0Out.Add(-1)
			ctx.Response.Header.Set("Retry-After", "1")
			return fail(ctx, fasthttp.StatusServiceUnavailable, "overloaded: req_pool_size acks=0 records still being delivered; the record was not written")
		}
	}
	return s.produce(ctx, dl, topic.name, args.Peek("key"), body, &hp, acks, noSpool, size)
}

// lookupTimeout bounds a look-up of a topic kproxy knows, made for records
// that may be spooled (spoolable) or not: no broker gets longer than
// spool_after_ms to answer for the first (0: only their deadline bounds it),
// or what is left of after, when not nil, the spool_after_ms of look-ups
// made before for the same records (leftOf).
func (s *Server) lookupTimeout(spoolable bool, after context.Context) time.Duration {
	switch {
	case !spoolable:
		return 0
	case after != nil:
		return leftOf(after)
	}
	return s.spool.afterD
}

// leftOf is what is left of after for a look-up; once spent, 1 ns (0
// would be none): no broker is waited for again.
func leftOf(after context.Context) time.Duration {
	end, _ := after.Deadline()
	return max(time.Until(end), time.Nanosecond)
}

// spoolable tells whether a request's records may be spooled.
func (s *Server) spoolable(acks int, atomic, noSpool bool) bool {
	return s.spool != nil && acks != 0 && !atomic && !noSpool
}

// topicFor is what kproxy knows of topic t (topicCheck.exists), asked
// within dl, the deadline of the records naming it. For
// records that may be spooled, no broker gets longer than spool_after_ms
// to answer: when none did (unreachable, not a refusal of the topic), the
// topic is taken as named and spools (spooler.blind), so that kproxy takes
// records for topics it had not written to since its start while Kafka is
// away.
//
// after, when not nil, is the spool_after_ms of look-ups made before for
// the same records: of the topic before the body came (expectCommit), of
// a batch's other topics (checkBatch). This one gets what is left of it,
// so that a record waits spool_after_ms once, not once before its 100
// Continue and again after its body, nor once for each topic of its
// batch. Nor does it wait past dl: when dl comes first, the record is
// refused with the look-up's error (nothing written), unless its topic
// spools already (blind).
//
// blind tells that no broker answered the topic's metadata within after:
// spent, after is not waited for again for the same records. A broker
// that answered it, its describe-configs then cut by after (lookup: the
// topic is known, max_message_bytes serves), leaves it unspent.
func (s *Server) topicFor(dl context.Context, t []byte, spoolable bool, after context.Context) (info topicInfo, blind bool, err error) {
	if !spoolable {
		info, err = s.check.exists(dl, t, 0)
		return info, false, err
	}
	timeout := s.spool.afterD
	if after == nil {
		after = s.spool.after.get()
	} else {
		timeout = leftOf(after) // a known topic costs no context
	}
	info, err = s.check.exists(dl, t, timeout)
	if err == nil || !unreachable(err) {
		return info, false, err
	}
	if !s.spool.blind(string(t), after, dl) {
		return topicInfo{}, true, err
	}
	return s.check.unverified(t), true, nil
}

// checkBody answers a body that is not exactly one value of its format:
// JSON with Content-Type application/json (parameters allowed), else
// msgpack. It returns 0 for a good body.
func (s *Server) checkBody(ctx *fasthttp.RequestCtx, body []byte) int {
	if isJSON(ctx.Request.Header.ContentType()) {
		s.metrics.bodies[formatJSON].Inc()
		if len(body) == 0 {
			return fail(ctx, fasthttp.StatusBadRequest, "empty body; send one JSON value")
		}
		if err := jsonscan.Valid(body); err != nil {
			return fail(ctx, fasthttp.StatusBadRequest, "body is not one JSON value: "+err.Error())
		}
		return 0
	}
	s.metrics.bodies[formatMsgpack].Inc()
	if len(body) == 0 {
		return fail(ctx, fasthttp.StatusBadRequest, "empty body; send one msgpack value")
	}
	if err := msgpackscan.Valid(body); err != nil {
		return fail(ctx, fasthttp.StatusBadRequest, "body is not one msgpack value: "+err.Error())
	}
	return 0
}

// ambiguousLength reports whether the request has both Transfer-Encoding
// and Content-Length. fasthttp reads such a body by its chunks; a proxy in
// front that goes by Content-Length reads another request from the same
// bytes, and what one of them takes for the next request the other never
// saw (request smuggling). RFC 9112 6.3: such a message "ought to be
// handled as an error", and the connection closed after the answer (6.1).
//
// The raw header lines tell: fasthttp gives a chunked body's length as -1,
// or as 0 once an empty one was read (dropping Transfer-Encoding then), and
// drops Transfer-Encoding: identity, going by Content-Length. An empty
// chunked body was taken for none, and the request that followed it in
// what a proxy took for its body written; so was a body of a request with
// Transfer-Encoding: identity, which a proxy may read to the connection's
// end, the requests after it included.
func ambiguousLength(ctx *fasthttp.RequestCtx) bool {
	var length, encoding bool
	raw := ctx.Request.Header.RawHeaders()
	for len(raw) > 0 {
		// Line by line, a line folded onto the field before it (obs-fold)
		// included: fasthttp joins it to that field, but a proxy in
		// front that takes it for a field of its own would frame the body
		// by it (" Transfer-Encoding: chunked" after "X-A: 1").
		var line []byte
		line, raw, _ = bytes.Cut(raw, []byte("\n"))
		name, _, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		length = length || bytes.EqualFold(name, []byte(fasthttp.HeaderContentLength))
		encoding = encoding || bytes.EqualFold(name, []byte(fasthttp.HeaderTransferEncoding))
	}
	return length && encoding
}

// hasFragment reports whether the request target holds a '#': fasthttp
// takes what follows for a fragment and drops it, parameters included.
// topic=orders&key=user#42&acks=-1 (a key built into the target without
// escaping) was written under the key user at acks=1, answered 200.
func hasFragment(ctx *fasthttp.RequestCtx) bool {
	return bytes.IndexByte(ctx.RequestURI(), '#') >= 0
}

const fragmentReason = "'#' in the request target: what follows it, parameters included, would be dropped; percent-encode it as %23"

const ambiguousLengthReason = "both Content-Length and Transfer-Encoding: the body's length is ambiguous (RFC 9112 6.1); send one of them"

// contentCoding refuses a body sent with a content coding: kproxy writes
// bodies as sent and decodes none (RFC 9110 15.5.16: 415, with the codings
// it takes). Only the codings registered with IANA, which transform the
// body, are refused; a value naming none ("UTF-8", which Java clients send
// from HttpClient's setContentEncoding, "binary") says nothing of the
// body, which kproxy always wrote as sent and still does. It returns the
// reason, or "".
func contentCoding(ctx *fasthttp.RequestCtx) string {
	ce := ctx.Request.Header.ContentEncoding()
	if len(ce) == 0 || !transformsBody(ce) {
		return ""
	}
	ctx.Response.Header.Set("Accept-Encoding", "identity")
	return "Content-Encoding " + strconv.Quote(string(ce[:min(len(ce), 64)])) +
		" is not supported: the body is written as sent, so send it uncompressed"
}

// bodyCodings are the content codings of IANA's registry but identity,
// and compressions outside it that clients send (log shippers: snappy,
// lz4, bzip2, xz): each transforms the body.
var bodyCodings = []string{"gzip", "x-gzip", "deflate", "br", "zstd", "compress", "x-compress",
	"aes128gcm", "exi", "pack200-gzip", "dcb", "dcz",
	"snappy", "x-snappy-framed", "lz4", "bzip2", "x-bzip2", "xz", "lzma"}

// transformsBody tells whether a Content-Encoding list names a coding of
// bodyCodings.
func transformsBody(ce []byte) bool {
	for len(ce) > 0 {
		var tok []byte
		tok, ce, _ = bytes.Cut(ce, []byte(","))
		tok = bytes.TrimSpace(tok)
		for _, c := range bodyCodings {
			if bytes.EqualFold(tok, []byte(c)) {
				return true
			}
		}
	}
	return false
}

// isJSON reports whether a Content-Type is application/json, whatever its
// parameters (charset=utf-8).
func isJSON(ctype []byte) bool {
	if i := bytes.IndexByte(ctype, ';'); i >= 0 {
		ctype = ctype[:i]
	}
	return bytes.EqualFold(bytes.TrimSpace(ctype), []byte("application/json"))
}

// tooLarge is the reason a record of size bytes, headers of them its
// headers', is refused by the limit named.
func tooLarge(size, headers int, limit string, max int) string {
	reason := "record of " + strconv.Itoa(size) + " bytes "
	if headers > 0 {
		reason += "(headers " + strconv.Itoa(headers) + ") "
	}
	return reason + "larger than " + limit + " (" + strconv.Itoa(max) + ")"
}

func (s *Server) produce(ctx *fasthttp.RequestCtx, dl context.Context, topic string, key, body []byte, hp *headerPlan, acks int, noSpool bool, size int) int {
	p := pendingPool.Get().(*pending)
	// The body and key are copied: fasthttp reuses its buffers once the
	// handler returns, and kgo holds the record until Kafka answers.
	p.buf = append(p.buf[:0], body...)
	p.rec = kgo.Record{Topic: topic, Value: p.buf, Context: p}
	if len(key) > 0 {
		p.key = append(p.key[:0], key...)
		p.rec.Key = p.key
	}
	if hp.count > 0 {
		p.headers, p.hbuf = s.appendHeaders(p.headers[:0], p.hbuf, ctx, hp)
		p.rec.Headers = p.headers
	}
	p.srv, p.acks = s, acks
	p.state.Store(waiting)
	// The record's deadline (from the request's arrival): kgo sends no
	// batch whose first record's context is done, and fails it instead.
	p.ctx = dl
	p.cl, p.tr = s.prod.client(acks)
	if !p.tr.room.take(1) {
		p.release()
		if acks == 0 {
			s.acks0Out.Add(-1)
		}
		return s.kafkaFail(ctx, fasthttp.StatusServiceUnavailable, noRoom, topic, errNoRoom)
	}
	p.note = p.tr.note()
	if s.spool != nil && acks != 0 {
		if code, answered := s.gateCommit(ctx, p, noSpool); answered {
			return code
		}
	} else if acks == 0 {
		if !s.prod.enterAcks0() {
			p.tr.room.give(1)
			p.release()
			s.acks0Out.Add(-1)
			s.metrics.produceErrors.WithLabelValues("503").Inc()
			ctx.Response.Header.Set("Retry-After", "1")
			return fail(ctx, fasthttp.StatusServiceUnavailable, notOpen)
		}
		t, g := p.tr.order.take(p.rec.Topic, p.ctx)
		p.order.Store(g)
		p.cl.Produce(p.ctx, &p.rec, onProduced)
		t.unlock()
		s.prod.leaveAcks0()
	} else {
		t, g := p.tr.order.take(p.rec.Topic, p.ctx)
		p.order.Store(g)
		p.cl.Produce(p.ctx, &p.rec, onProduced)
		t.unlock()
	}
	if acks == 0 {
		// Answered now; the promise delivers it (retried until the
		// deadline), counts it if it is lost, and releases p: p is not
		// ours any more.
		return succeed(ctx, -1, 0, false)
	}

	if code, answered := s.awaitRecord(ctx, p); answered {
		return code
	}
	if p.item != nil {
		// Taken by a flip, and kgo answered it since: answered from the
		// spool. p is released once its copy has its outcome (the spool
		// no longer reads p once kgo answered: spoolItem.answered).
		code := s.answerSpooled(ctx, p.item, dl)
		p.release()
		return code
	}
	// Refused as too large only with its batch, fitting alone: not sent
	// again by kproxy (a later record of its key, taken meanwhile, could
	// be written before it), but answered so that its client sends it
	// again. refusedTopic has the acks=1 client build the topic's batches
	// anew to the new limit.
	tooLargeBatch, unread := false, error(nil)
	if p.err != nil {
		tooLargeBatch, unread = s.batchedTooLarge(dl, p.err, p.rec.Topic, size)
	}
	err, trace, partition, offset, cl, gated := p.err, p.trace, p.rec.Partition, p.rec.Offset, p.cl, p.gate != nil
	p.release()
	if err != nil {
		code, reason := produceStatus(err, trace)
		if why, ok := earlierReason(err, dl, gated); ok && code == fasthttp.StatusServiceUnavailable {
			reason = why
		}
		if tooLargeBatch && code == fasthttp.StatusRequestEntityTooLarge {
			// Not 413: the record fits, and a client does not send again
			// what is too large.
			code, reason = s.batchTooLargeStatus(cl, trace, unread)
		}
		return s.kafkaFail(ctx, code, reason, topic, err)
	}
	s.metrics.records[acks].Inc()
	return succeed(ctx, partition, offset, true)
}

// batchedTooLarge tells whether a record of size bytes refused with err
// was refused as too large (MESSAGE_TOO_LARGE) only for the batch it was
// in: it fits its topic's max.message.bytes, asked again within dl
// (after the refusal, refusedTopic made kproxy forget the limit it had
// read). When the limit cannot be read again (unread: no broker answered
// within dl), nothing says the record is too large either: it passed the
// limit read before, and 413 would tell its client to drop a record the
// topic may take; it is answered as refused with its batch, and its
// client's next try reads the limit at intake. kgo fails the partition's
// later batches with a refused batch's error; the refusal then says nothing
// of them, and a later batch that was out may be written after all, unless
// the broker refuses it by its sequence number (the idempotent client) or
// none was out (the acks=1 client with max_in_flight_requests 1): only then
// is it known that such a record was not written. A pipelining acks=1
// client's record whose batch may have been out is answered 504 before
// (produceStatus: a batch built or a request written since it was handed
// over); one that gets here never left.
func (s *Server) batchedTooLarge(dl context.Context, err error, topic string, size int) (batched bool, unread error) {
	if !errors.Is(err, kerr.MessageTooLarge) && !errors.Is(err, kerr.RecordListTooLarge) {
		return false, nil
	}
	info, lerr := s.check.exists(dl, []byte(topic), 0)
	if lerr != nil {
		return true, lerr
	}
	return size <= int(info.maxBytes), nil
}

// batchTooLargeStatus answers a record refused by cl with a batch built to
// the larger limit the topic had, which fits its topic's
// max.message.bytes or whose limit could not be read again (unread; both
// batchedTooLarge): 503, not written, unless an earlier attempt of its
// batch may have been written. The idempotent client retries a batch the
// broker appended and answered REQUEST_TIMED_OUT or
// NOT_ENOUGH_REPLICAS_AFTER_APPEND, and the broker checks a batch's size
// before its sequence numbers: the retry of a batch it wrote before the
// limit was lowered is refused as too large. No hook shows those answers;
// a second produce request written by the client since the record was
// handed over (t.rewrote) may have been such a retry: 504. At acks=1
// brokers send neither answer.
func (s *Server) batchTooLargeStatus(cl *kgo.Client, t sendTrace, unread error) (int, string) {
	code, reason := fasthttp.StatusServiceUnavailable, batchTooLarge
	if cl == s.prod.all && t.rewrote {
		code, reason = fasthttp.StatusGatewayTimeout, batchTooLargeRetried
	}
	if unread != nil {
		written := notWritten
		if code == fasthttp.StatusGatewayTimeout {
			written = mayBeWritten
		}
		reason = "kafka refused the batch holding the record as too large, and kproxy could not read the topic's " +
			"max.message.bytes again (" + unread.Error() + "); sent again, a record larger than it is refused with 413" + written
	}
	return code, reason
}

// batchTooLarge answers a record that fits its topic's max.message.bytes,
// refused with a batch built to the larger limit the topic had;
// batchTooLargeRetried, one whose batch may have been written before.
const (
	batchTooLarge = "kafka refused the batch holding the record as too large (the topic's max.message.bytes " +
		"was lowered while kproxy ran); the record itself fits it" + notWritten
	batchTooLargeRetried = "kafka refused the batch holding the record as too large (the topic's max.message.bytes " +
		"was lowered while kproxy ran), perhaps a retry of a batch it had written" + mayBeWritten
)

// awaitRecord waits for kgo's answer to p's record (then p.done has
// fired and answered is false). With the spool, Kafka has spool_after_ms
// to take it, and then its topic spools: the record is taken into the
// spool (spool.go) and answered from there, and p is left to its
// promise. Past the record's deadline and answerGrace, the request is
// answered 504 (code, answered) and p left to its promise, which
// releases it.
func (s *Server) awaitRecord(ctx *fasthttp.RequestCtx, p *pending) (code int, answered bool) {
	if p.gen != nil {
		select {
		case <-p.done:
			return 0, false
		case <-p.ctx.Done():
			// Before spool_after_ms (a record handed over late: a slow
			// body): answered by its deadline as any other, not spooled
			// past it and answered 202 late.
		case <-s.spool.after.get().Done():
			if it := s.spool.flip(&p.gateRec); it != nil {
				return s.answerTaken(ctx, p, it), true
			}
		}
	}
	select {
	case <-p.done:
		return 0, false
	case <-p.ctx.Done():
	}
	// The deadline passed. kgo fails a record it has not sent at its next
	// attempt; a short grace lets that answer (503) come.
	timer := timerPool.Get().(*time.Timer)
	timer.Reset(answerGrace)
	defer func() {
		timer.Stop()
		timerPool.Put(timer)
	}()
	select {
	case <-p.done:
		return 0, false
	case <-timer.C:
	}
	if p.gen != nil {
		// Taken into the spool meanwhile by another request's flip:
		// the spool answers it (202), not given up (504).
		if it := s.spool.taken(&p.gateRec); it != nil {
			return s.answerTaken(ctx, p, it), true
		}
	}
	if !p.state.CompareAndSwap(waiting, abandoned) {
		<-p.done // the promise came meanwhile
		return 0, false
	}
	// The record is in a request awaiting its answer, or queued and failed
	// by kgo before it can leave.
	s.metrics.produceErrors.WithLabelValues("504").Inc()
	ctx.Response.Header.Set("Retry-After", "1")
	return fail(ctx, fasthttp.StatusGatewayTimeout, "no answer from kafka within produce_timeout_ms; the record may have been written"), true
}

// gateCommit hands p's record to kgo through its topic's gate (spool.go),
// or to the spool when the topic spools; answered tells that the request
// was answered (code) and p released.
func (s *Server) gateCommit(ctx *fasthttp.RequestCtx, p *pending, noSpool bool) (code int, answered bool) {
	g := s.spool.lockGate(p.rec.Topic)
	if !s.spool.directLocked(g) {
		p.tr.room.give(1) // not for kgo
		if noSpool {
			g.mu.Unlock()
			topic := p.rec.Topic
			p.release()
			// Counted as a batch's record refused alike (outcome).
			return s.kafkaFail(ctx, fasthttp.StatusServiceUnavailable, spoolOvertake, topic, errSpoolOvertake), true
		}
		it := newSpoolItem(g, &p.rec, false, p.rec.Timestamp) // not kgo's: now
		s.spool.holdLocked(g, it)
		g.mu.Unlock()
		dl := p.ctx
		p.release()
		return s.answerSpooled(ctx, it, dl), true
	}
	if noSpool {
		g.addLocked(&p.gateRec, &p.rec, nil)
		t, og := p.tr.order.take(p.rec.Topic, p.ctx)
		p.order.Store(og)
		p.cl.Produce(p.ctx, &p.rec, onProduced)
		t.unlock()
	} else {
		g.addLocked(&p.gateRec, &p.rec, g.gen)
		p.cl.Produce(g.gen, &p.rec, onProduced)
	}
	g.mu.Unlock()
	return 0, false
}

// answerTaken answers p's record, taken into the spool by its topic's flip
// while kgo still has it, once it is on disk; p is left to its promise
// (which ignores kgo's answer), or released here if the promise came.
func (s *Server) answerTaken(ctx *fasthttp.RequestCtx, p *pending, it *spoolItem) int {
	code := s.answerSpooled(ctx, it, p.ctx)
	if !p.state.CompareAndSwap(waiting, abandoned) {
		<-p.done
		p.release()
	}
	return code
}

// spoolOvertake refuses a spool=0 record of a topic that has records in
// the spool: written now, it would overtake them.
const spoolOvertake = "the topic has records in the spool waiting for kafka, which a record with spool=0 would overtake" + notWritten

// answerSpooled answers a record given to the spool once it is on disk:
// 202 {"spooled":true}, or why the spool could not take it. dl is the
// record's deadline: held behind a record of its key that kgo has, it is
// refused then (spooler.await).
func (s *Server) answerSpooled(ctx *fasthttp.RequestCtx, it *spoolItem, dl context.Context) int {
	s.spool.await(it, dl, nil)
	if it.err != nil {
		code, reason := it.refusal()
		return s.kafkaFail(ctx, code, reason, it.rec.Topic, it.err)
	}
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.SetContentType("application/json")
	ctx.Response.SetBodyString("{\"spooled\":true}\n")
	return fasthttp.StatusAccepted
}

// answerGrace is how long past produce_timeout_ms a handler waits for kgo
// to fail a record it did not send, which is then answered 503 rather
// than 504. kgo notices at its next attempt, at most retryBackoff's 200 ms
// after the deadline while it retries.
const answerGrace = 250 * time.Millisecond

var timerPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// kafkaFail answers a produce or metadata error with its status.
func (s *Server) kafkaFail(ctx *fasthttp.RequestCtx, code int, reason, topic string, err error) int {
	s.metrics.produceErrors.WithLabelValues(strconv.Itoa(code)).Inc()
	if code >= 500 {
		ctx.Response.Header.Set("Retry-After", "1")
		s.errLog.warn("kafka write failed", "topic", topic, "code", code, "err", err)
	}
	return fail(ctx, code, reason)
}

func succeed(ctx *fasthttp.RequestCtx, partition int32, offset int64, withOffset bool) int {
	ctx.SetContentType("application/json")
	var buf [64]byte
	b := append(buf[:0], `{"partition":`...)
	b = strconv.AppendInt(b, int64(partition), 10)
	if withOffset {
		b = append(b, `,"offset":`...)
		b = strconv.AppendInt(b, offset, 10)
	}
	b = append(b, "}\n"...)
	ctx.Response.AppendBody(b) // copied into fasthttp's pooled buffer
	return fasthttp.StatusOK
}

// fail answers code with a one-line reason.
func fail(ctx *fasthttp.RequestCtx, code int, reason string) int {
	ctx.SetStatusCode(code)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.Response.SetBodyString(reason + "\n")
	return code
}

// checkTopicName applies Kafka's rules for topic names.
func checkTopicName(t []byte) string {
	if len(t) > 249 {
		return "topic name longer than 249 characters"
	}
	if string(t) == "." || string(t) == ".." {
		return "topic name cannot be . or .."
	}
	for _, c := range t {
		if !topicNameChar(c) {
			return "topic name may only hold ASCII letters, digits, '.', '_' and '-'"
		}
	}
	return ""
}

// topicNameChar tells a character a Kafka topic name may hold.
func topicNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// requestError answers requests fasthttp could not read.
func (s *Server) requestError(ctx *fasthttp.RequestCtx, err error) {
	if st := ctx.TLSConnectionState(); st != nil && !st.HandshakeComplete {
		// The TLS handshake failed (plain HTTP on the HTTPS port is
		// answered by the listener): not a request, and nothing can be
		// answered over the connection.
		return
	}
	code, reason := fasthttp.StatusBadRequest, "malformed request"
	var nerr interface{ Timeout() bool }
	var small *fasthttp.ErrSmallBuffer
	hold := s.bodyDone(ctx)
	switch {
	case hold.refused && errors.Is(err, fasthttp.ErrBodyTooLarge):
		// Refused by max_body_bytes_in_flight (headerReceived), its
		// body unread.
		s.bodiesOverloaded(ctx)
		code, reason = fasthttp.StatusServiceUnavailable, ""
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		code, reason = fasthttp.StatusRequestEntityTooLarge,
			"body larger than max_request_size_bytes ("+strconv.Itoa(s.cfg.MaxRequestSizeBytes)+")"
	case errors.As(err, &small):
		code, reason = fasthttp.StatusRequestHeaderFieldsTooLarge, "request line or headers too large"
	case errors.As(err, &nerr) && nerr.Timeout():
		code, reason = fasthttp.StatusRequestTimeout, "request not received within read_timeout_ms"
	default:
		reason += ": " + requestErrorText(err)
	}
	// kproxy_requests_total counts the answers of /commit and /batch, not
	// those of /health or unknown paths, as in handle; a request refused
	// before its path was read is counted (its path is then "/"). Those
	// of /batch are in kproxy_batches_total too.
	if p := string(ctx.Path()); p == "/" || p == "/commit" || p == "/batch" {
		s.metrics.answered(code)
		if p == "/batch" {
			s.metrics.batches.WithLabelValues(strconv.Itoa(code)).Inc() // as observeBatch, without a duration: nothing was read
		}
	}
	if reason != "" {
		fail(ctx, code, reason)
	}
	// fasthttp closes the connection after this answer, perhaps with the
	// rest of the request unread: it lingers (see lingerConn).
	lingerOnClose(ctx.Conn())
	// fasthttp writes this answer under the write deadline it set for the
	// connection's previous answer, long past on a keep-alive connection
	// (read_timeout_ms >= write_timeout_ms): the connection was closed
	// with no 408, and with release_idle_buffers false the previous
	// answer, still buffered behind a pipelined request, was lost with it.
	_ = ctx.Conn().SetWriteDeadline(time.Now().Add(time.Duration(s.cfg.WriteTimeoutMs) * time.Millisecond))
}

// requestErrorText is what kproxy says of an error fasthttp met reading a
// request, in its answer and its log: one line of at most 200 bytes,
// without the request's bytes. fasthttp quotes them in some of its errors
// (a header's value; the whole header block, Authorization and Cookie
// included, when the first line does not parse): the text stops before
// the first quote.
func requestErrorText(err error) string {
	msg := err.Error()
	if i := strings.IndexAny(msg, "\"\r\n"); i >= 0 {
		msg = strings.TrimRight(msg[:i], " :")
	}
	if len(msg) > 200 {
		msg = strings.ToValidUTF8(msg[:200], "") + "…"
	}
	return msg
}

// commitParams are /commit's parameters.
var commitParams = [...]string{"topic", "key", "acks", "spool"}

// miscasedParam is the first parameter of args named as one of /commit's
// in another case ("Key", "ACKS"), and that one. /commit ignores the
// parameters it does not know (a client's cache buster, a tracing id), as
// it always did; such a one is a typo: ignored, it wrote a record without
// the key, at the acks, or to the spool the client asked for.
func miscasedParam(args *fasthttp.Args) (name, known string) {
	for k := range args.All() {
		for _, p := range commitParams {
			if len(k) == len(p) && string(k) != p && strings.EqualFold(string(k), p) {
				return string(k), p
			}
		}
	}
	return "", ""
}

// repeatedParam names a parameter of the API given twice ("topic=a&topic=b"
// would otherwise mean whichever one a reader picks), or returns "".
func repeatedParam(args *fasthttp.Args) string {
	var topic, key, acks, atomic, spool int
	for k := range args.All() {
		switch string(k) {
		case "topic":
			topic++
		case "key":
			key++
		case "acks":
			acks++
		case "atomic":
			atomic++
		case "spool":
			spool++
		}
	}
	switch {
	case topic > 1:
		return "topic"
	case key > 1:
		return "key"
	case acks > 1:
		return "acks"
	case atomic > 1:
		return "atomic"
	case spool > 1:
		return "spool"
	}
	return ""
}

// spoolParam reads the spool parameter: spool=0 asks for Kafka's answer
// (200 or an error), never the spool's 202.
func spoolParam(args *fasthttp.Args) (noSpool bool, reason string) {
	switch v := args.Peek("spool"); string(v) {
	case "0", "false":
		return true, ""
	case "1", "true":
		return false, ""
	default:
		if len(v) > 0 || args.Has("spool") {
			return false, "spool must be 0 or 1"
		}
	}
	return false, ""
}
