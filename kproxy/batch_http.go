package kproxy

import (
	"context"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
)

// batchExtFields gives every record of a batch the request's ext fields
// (ext_headers: ip, ua, rid, ck), as /commit gives its record, and refuses
// a record whose own headers name one of them: a client may not set them.
func (s *Server) batchExtFields(ctx *fasthttp.RequestCtx, recs []batchRecord) *batchError {
	if s.ext.on == 0 {
		return nil
	}
	if berr := s.forgedExtField(recs); berr != nil {
		return berr
	}
	// Copied once, shared by the records (kgo only reads them).
	ext, _ := s.ext.appendTo(nil, nil, ctx, s.ext.clientIP(ctx))
	withExtFields(recs, ext)
	return nil
}

// withExtFields appends ext, the ext fields of the request (or gRPC call)
// the records came in, to each record's own headers. The records share
// ext's values.
func withExtFields(recs []batchRecord, ext []kgo.RecordHeader) {
	if len(ext) == 0 {
		return
	}
	for i := range recs {
		recs[i].headers = append(recs[i].headers, ext...)
	}
}

// forgedExtField refuses the first record whose own headers name an ext
// field (ext_headers): a client may not set them, over HTTP or gRPC.
func (s *Server) forgedExtField(recs []batchRecord) *batchError {
	if s.ext.on == 0 {
		return nil
	}
	for i := range recs {
		for _, h := range recs[i].headers {
			if s.ext.reserved([]byte(h.Key)) {
				return refuse(400, i, "header "+strconv.Quote(h.Key)+" is set by kproxy (ext_headers)")
			}
		}
	}
	return nil
}

// batchHead is what a /batch request asks for in its line and headers.
type batchHead struct {
	acks    int
	atomic  bool
	noSpool bool
	topic   []byte  // the topic parameter: the records' default
	acl     *access // the rules in force when the request arrived
	rule    *clientRule
}

// checkBatchHead checks what /batch reads from a request's line and
// headers, before its body: the method, the parameters and the client's
// credentials. A request refused is answered (code); else h is what it
// asks for.
func (s *Server) checkBatchHead(ctx *fasthttp.RequestCtx) (h batchHead, code int) {
	if ambiguousLength(ctx) {
		return h, batchFail(ctx, refuse(400, -1, ambiguousLengthReason))
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		return h, batchFail(ctx, refuse(fasthttp.StatusMethodNotAllowed, -1, "use POST"))
	}
	if hasFragment(ctx) {
		return h, batchFail(ctx, refuse(400, -1, fragmentReason))
	}
	args := ctx.QueryArgs()
	if args.Len() > 1 {
		if name := repeatedParam(args); name != "" {
			return h, batchFail(ctx, refuse(400, -1, name+" given more than once"))
		}
	}
	if args.Has("key") {
		return h, batchFail(ctx, refuse(400, -1, "no key parameter in /batch: each record carries its own key"))
	}
	for k := range args.All() {
		// A misspelled atomic would write a batch that can end half
		// written: every parameter must be known.
		if n := string(k); n != "acks" && n != "topic" && n != "atomic" && n != "spool" {
			return h, batchFail(ctx, refuse(400, -1, "unknown parameter "+strconv.Quote(n)+" (known: acks, topic, atomic, spool)"))
		}
	}
	acksB := args.Peek("acks")
	acks, ok := acksIndex(acksB)
	if !ok || (len(acksB) == 0 && args.Has("acks")) {
		return h, batchFail(ctx, refuse(400, -1, "acks must be 0, 1 or -1"))
	}
	var atomic bool
	switch a := args.Peek("atomic"); string(a) {
	case "1", "true":
		atomic = true
	case "0", "false":
	default:
		if len(a) > 0 || args.Has("atomic") {
			return h, batchFail(ctx, refuse(400, -1, "atomic must be 1 or 0"))
		}
	}
	if atomic && acks != 2 {
		return h, batchFail(ctx, refuse(400, -1, "atomic=1 needs acks=-1 (a Kafka transaction is written to every in-sync replica)"))
	}
	noSpool, reason := spoolParam(args)
	if reason != "" {
		return h, batchFail(ctx, refuse(400, -1, reason))
	}
	if atomic && s.txns == nil {
		return h, batchFail(ctx, refuse(400, -1, "atomic batches are off (transactional_producers: 0)"))
	}
	topic := args.Peek("topic")
	if len(topic) > 0 {
		if reason := checkTopicName(topic); reason != "" {
			return h, batchFail(ctx, refuse(400, -1, reason))
		}
	}
	for k := range requestHeaders(ctx) {
		// Asked for a record header that /batch would not write: each
		// record carries its own. A trailer field is no header: ignored,
		// as /commit ignores it.
		if _, ok := kafkaHeaderName(k); ok {
			return h, batchFail(ctx, refuse(400, -1, kafkaHeaderPrefix+"* headers are for /commit; a /batch record carries its own (\"headers\")"))
		}
	}
	acl := s.acl() // the rules of the whole request
	rule, v := acl.authenticate(ctx.Request.Header.Peek("Authorization"))
	if v.code != 0 {
		ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="kproxy"`)
		return h, batchFail(ctx, refuse(v.code, -1, v.reason))
	}
	if reason := contentCoding(ctx); reason != "" {
		return h, batchFail(ctx, refuse(fasthttp.StatusUnsupportedMediaType, -1, reason))
	}
	return batchHead{acks: acks, atomic: atomic, noSpool: noSpool, topic: topic, acl: acl, rule: rule}, 0
}

// batch answers POST /batch?acks=N[&topic=T][&atomic=1]: it reads the
// request into records and hands them to the core (batch.go). Every
// answer is JSON.
func (s *Server) batch(ctx *fasthttp.RequestCtx) int {
	h, code := s.checkBatchHead(ctx)
	if code != 0 {
		return code
	}
	acks, atomic, noSpool, topic, rule := h.acks, h.atomic, h.noSpool, h.topic, h.rule
	body := ctx.PostBody()
	if len(body) == 0 {
		return batchFail(ctx, refuse(400, -1, "empty body; send an array of records"))
	}
	// The records are slices of the body, which kgo holds until Kafka
	// answers, perhaps after this handler returned (504): a copy, not
	// fasthttp's buffer, in the batch's job (given back when kgo let go
	// of every record). The topic parameter is not held (checkBatch gives
	// each record the topic's own name).
	j := getBatchJob()
	defer j.release()             // after the answer is written: it reads j's results
	j.timeout = s.deadlines.get() // the records' deadline runs from here
	j.body = append(j.body[:0], body...)
	j.noSpool = noSpool
	var berr *batchError
	if isJSON(ctx.Request.Header.ContentType()) {
		j.recs, berr = parseJSONBatch(j.recs, j.body, topic, s.cfg.MaxBatchRecords)
	} else {
		j.recs, berr = parseMsgpackBatch(j.recs, j.body, topic, s.cfg.MaxBatchRecords)
	}
	if berr != nil {
		return batchFail(ctx, berr)
	}
	if berr = s.batchExtFields(ctx, j.recs); berr != nil {
		return batchFail(ctx, berr)
	}
	n := len(j.recs)
	s.metrics.batchSize.Observe(float64(n))
	if berr = s.admitBatch(n); berr != nil {
		return batchFail(ctx, berr)
	}
	defer s.releaseBatch(n)
	if berr = s.checkBatch(s.recordsDeadline(j), h.acl, rule, j.recs, arrival(ctx), s.spoolable(acks, atomic, noSpool)); berr != nil {
		return batchFail(ctx, berr)
	}
	out := s.produceBatch(context.Background(), acks, atomic, j)
	if out.givesBack() {
		s.acl().giveBack(rule, n)
	}
	return batchAnswer(ctx, out)
}

var answerPool = sync.Pool{New: func() any { return new([]byte) }}

// batchAnswer writes a batch's outcome: {"results":[…]} for 200; for any
// other status also "error" (why) and "index" (the first record not
// written), and each result's "status" (and "error" when not 200).
func batchAnswer(ctx *fasthttp.RequestCtx, out batchOutcome) int {
	bp := answerPool.Get().(*[]byte)
	b := append((*bp)[:0], '{')
	if out.status != 200 {
		b = append(b, `"error":`...)
		b = appendJSONString(b, out.reason)
		if out.index >= 0 {
			b = append(b, `,"index":`...)
			b = strconv.AppendInt(b, int64(out.index), 10)
		}
		b = append(b, ',')
	}
	b = append(b, `"results":[`...)
	for i, r := range out.results {
		if i > 0 {
			b = append(b, ',')
		}
		if r.status == 202 {
			b = append(b, `{"spooled":true,"status":202}`...)
			continue
		}
		if r.status != 200 {
			b = append(b, `{"status":`...)
			b = strconv.AppendInt(b, int64(r.status), 10)
			b = append(b, `,"error":`...)
			b = appendJSONString(b, r.reason)
			b = append(b, '}')
			continue
		}
		b = append(b, `{"partition":`...)
		b = strconv.AppendInt(b, int64(r.partition), 10)
		if r.offset >= 0 {
			b = append(b, `,"offset":`...)
			b = strconv.AppendInt(b, r.offset, 10)
		}
		if out.status != 200 {
			b = append(b, `,"status":200`...)
		}
		b = append(b, '}')
	}
	b = append(b, "]}\n"...)
	if out.status > 500 { // 500: refused alike until a configuration changes
		ctx.Response.Header.Set("Retry-After", "1")
	}
	ctx.SetStatusCode(out.status)
	ctx.SetContentType("application/json")
	ctx.Response.SetBody(b) // copied
	if cap(b) <= maxPooledBody {
		*bp = b
		answerPool.Put(bp)
	}
	return out.status
}

// batchFail refuses a whole batch: {"error":…,"index":…}.
func batchFail(ctx *fasthttp.RequestCtx, e *batchError) int {
	var buf [256]byte
	b := append(buf[:0], `{"error":`...)
	b = appendJSONString(b, e.reason)
	if e.index >= 0 {
		b = append(b, `,"index":`...)
		b = strconv.AppendInt(b, int64(e.index), 10)
	}
	b = append(b, "}\n"...)
	if e.retryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	ctx.SetStatusCode(e.status)
	ctx.SetContentType("application/json")
	ctx.Response.SetBody(b)
	return e.status
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
