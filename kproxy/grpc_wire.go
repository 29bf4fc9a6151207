package kproxy

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
)

// kproxy reads its ProduceRequests and writes its ProduceResponses itself,
// as it reads /batch bodies: a request's bytes are copied once into a
// batch job (its body) and its records are slices of them, never decoded
// into messages of their own; an answer is appended straight to bytes.
// The protobuf codec's messages, a few allocations per record and the
// garbage they make, cost kproxy more CPU per record than the Kafka client.
// Any other message (health, reflection, a status's detail) is protobuf's.

// wireCodec is the gRPC server's codec.
type wireCodec struct{ proto encoding.CodecV2 }

func newWireCodec() wireCodec { return wireCodec{proto: encoding.GetCodecV2("proto")} }

// wireResponse is a ProduceResponse already encoded.
type wireResponse struct{ b []byte }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*wireResponse); ok {
		return mem.BufferSlice{mem.Copy(r.b, mem.DefaultBufferPool())}, nil
	}
	return c.proto.Marshal(v)
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if j, ok := v.(*batchJob); ok {
		// Copied: grpc reuses its buffers once this returns, and kgo holds
		// the records until Kafka answers. Into a buffer of about its
		// size: a pooled job's (up to 1 MiB) would be what the message
		// holds in max_body_bytes_in_flight (holdMessage).
		if n := data.Len(); cap(j.body) < n || cap(j.body) > max(bodyFloor, n+n/4) {
			j.body = make([]byte, 0, n)
		}
		j.body = j.body[:0]
		for _, b := range data {
			j.body = append(j.body, b.ReadOnlyData()...)
		}
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (wireCodec) Name() string { return "proto" }

// kproxyService is kproxypb's service description with Produce read into
// a batch job (the generated handler would decode a ProduceRequest).
func kproxyService() *grpc.ServiceDesc {
	desc := kproxypb.KProxy_ServiceDesc
	desc.Methods = []grpc.MethodDesc{{MethodName: "Produce", Handler: produceHandler}}
	return &desc
}

// afterDecode, when set, runs in a call between the read of its message
// and the disarming of its shutdown cut (cutRead): tests set it to begin a
// shutdown there. nil (a no-op) outside tests.
var afterDecode func(ctx context.Context)

// cutRead reads a unary call's message into v with dec. A call whose
// message has not come took nothing: at shutdown it must not hold kproxy
// (the shutdown waits for the calls under way). Should the shutdown begin
// while it reads, the call is ended with refusal, its read cut (callTap's
// cut); cut is refusal then, whatever dec returned: a message read just
// before is refused too, its records not handed on. Ended, not merely cut:
// grpc-go answers a read whose context ends Canceled, which a client
// takes for its own cancellation.
//
// Nor may a message that does not come hold its call for ever: a stalled
// or crashed sender's half-sent message sits in grpc-go's buffers (its
// flow-control window opened to the whole message), outside
// req_pool_size, until the connection goes. One not read within
// readBound of the call's start ends the call with slow, cut is slow;
// nothing was handed on.
func (s *Server) cutRead(ctx context.Context, dec func(any) error, v any, refusal, slow *status.Status) (cut *status.Status, err error) {
	const reading, read, shut, late = 0, 1, 2, 3
	var state atomic.Int32
	c, _ := ctx.Value(cutKey{}).(context.CancelFunc)
	end := func(to int32, st *status.Status) {
		if !state.CompareAndSwap(reading, to) {
			return // read: a request in flight, the shutdown waits for it
		}
		// grpc-go's transport stream; its WriteStatus ends the call (its
		// read too) with st. Without it, the cut alone ends the read:
		// Canceled.
		if w, ok := grpc.ServerTransportStreamFromContext(ctx).(interface{ WriteStatus(*status.Status) error }); ok {
			w.WriteStatus(st)
		}
		if c != nil {
			c()
		}
	}
	stop := func() bool { return true }
	if c != nil {
		stop = context.AfterFunc(s.drainCtx, func() { end(shut, refusal) })
	}
	timer := time.AfterFunc(s.readBound(), func() { end(late, slow) })
	err = dec(v)
	if afterDecode != nil {
		afterDecode(ctx)
	}
	stop()
	timer.Stop()
	if state.CompareAndSwap(reading, read) {
		return nil, err
	}
	if state.Load() == late {
		return slow, err
	}
	return refusal, err
}

// readBound is how long a unary call's message may take to come whole
// (cutRead): the longer of read_timeout_ms and idle_timeout_ms. A bound on
// a stalled sender, not on a request's latency: read_timeout_ms alone
// (100 ms by default, HTTP's) would refuse a large message from a client
// a few round trips away (the message and the end of its stream are read
// together, a message over the 1 MiB window a round trip later).
func (s *Server) readBound() time.Duration {
	return time.Duration(max(s.cfg.ReadTimeoutMs, s.cfg.IdleTimeoutMs)) * time.Millisecond
}

// readLate is a unary call's status when its message did not come within
// readBound (cutRead): Unavailable, nothing written.
func (s *Server) readLate() *status.Status {
	return status.New(codes.Unavailable, s.readLateReason())
}

func (s *Server) readLateReason() string {
	return "the request was not received within " + strconv.FormatInt(s.readBound().Milliseconds(), 10) +
		" ms (the longer of read_timeout_ms and idle_timeout_ms); nothing written"
}

// cutUnary is desc with the message of each unary method, and the
// request of each server stream (Health/Watch), read by cutRead: a call
// whose message has not come at shutdown is ended Unavailable (it carries
// no records: nothing is lost). The unary calls whose message was not
// read are counted here: countUnary never sees them (countStream counts
// the streams).
func (s *Server) cutUnary(desc *grpc.ServiceDesc) *grpc.ServiceDesc {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	shutdown := status.New(codes.Unavailable, "kproxy is shutting down")
	d.Streams = slices.Clone(desc.Streams)
	for i, sd := range d.Streams {
		if sd.ClientStreams {
			continue // its reads are its own
		}
		h := sd.Handler
		d.Streams[i].Handler = func(srv any, stream grpc.ServerStream) error {
			return h(srv, cutStream{stream, s, shutdown, s.readLate()})
		}
	}
	slow := s.readLate()
	for i, m := range desc.Methods {
		h, method := m.Handler, desc.ServiceName+"/"+m.MethodName
		d.Methods[i] = grpc.MethodDesc{MethodName: m.MethodName, Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(v any) error {
				cut, err := s.cutRead(ctx, dec, v, shutdown, slow)
				if cut != nil {
					err = cut.Err()
				}
				if err != nil {
					s.metrics.grpcRPCs.WithLabelValues(method, status.Code(err).String()).Inc()
				}
				return err
			}, ic)
		}}
	}
	return &d
}

// cutStream is a server stream whose one request is read by cutRead.
type cutStream struct {
	grpc.ServerStream
	s              *Server
	shutdown, slow *status.Status
}

func (c cutStream) RecvMsg(m any) error {
	cut, err := c.s.cutRead(c.Context(), c.ServerStream.RecvMsg, m, c.shutdown, c.slow)
	if cut != nil {
		return cut.Err()
	}
	return err
}

// produceShutdown is Produce's answer to a call cut at shutdown (cutRead):
// its request, if it came, is not written.
var produceShutdown = func() *status.Status {
	a := refusedAnswer(0, refuse(503, -1, "kproxy is shutting down; the request was not written"))
	a.retryAfter = 1
	return status.Convert(answerError(&a))
}()

func produceHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(grpcService).s
	x := s.callExt(ctx)
	x.echo(ctx)
	// The client is known before its message is read: one that is not
	// is answered at once, its message never read. Read first, a caller
	// without credentials held up to max_request_size_bytes per call
	// until readBound, on as many calls and connections as it opened.
	refusedCall := func(id uint64, e *batchError) error {
		a := refusedAnswer(id, e)
		err := answerError(&a)
		s.metrics.grpcAnswered("Produce", a.status, time.Now())
		s.metrics.grpcRPCs.WithLabelValues(strings.TrimPrefix(kproxypb.KProxy_Produce_FullMethodName, "/"), status.Code(err).String()).Inc()
		return err
	}
	unknown := func(id uint64, v verdict) error { return refusedCall(id, refuse(v.code, -1, v.reason)) }
	acl := s.acl() // the rules of the whole request
	rule, v := authenticateRPC(acl, ctx)
	if v.code != 0 {
		v.reason += "; the request was not read"
		return nil, unknown(0, v)
	}
	j := getBatchJob()
	// A call open at shutdown whose message has not come is no request
	// in flight: it does not hold the shutdown (cutRead). Ended
	// Unavailable, nothing written; so is one whose message came as the
	// shutdown began (it was not handed to Kafka).
	cut, err := s.cutRead(ctx, dec, j, produceShutdown, s.produceLate)
	if cut != nil {
		if err == nil {
			s.metrics.grpcAnswered("Produce", 503, time.Now())
		}
		err = cut.Err()
	}
	if err != nil {
		// Not read (over max_request_size_bytes, the client left, or
		// cut at shutdown), or read as the shutdown began: the
		// interceptor that counts calls never sees it.
		j.release()
		s.metrics.grpcRPCs.WithLabelValues(strings.TrimPrefix(kproxypb.KProxy_Produce_FullMethodName, "/"), status.Code(err).String()).Inc()
		return nil, err
	}
	if now := s.acl(); now != acl {
		// A reload stored new rules while the message came (up to
		// readBound): the client is found again by them, as a stream's
		// is before each request.
		acl = now
		if rule, v = authenticateRPC(acl, ctx); v.code != 0 {
			id := requestID(j.body)
			j.release()
			return nil, unknown(id, v)
		}
	}
	if berr := s.holdMessage(j); berr != nil {
		id := requestID(j.body)
		j.release()
		return nil, refusedCall(id, berr)
	}
	j.timeout = s.deadlines.get() // the records' deadline runs from here
	if interceptor == nil {
		return s.produce1(ctx, j, x, acl, rule)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: kproxypb.KProxy_Produce_FullMethodName}
	return interceptor(ctx, j, info, func(ctx context.Context, req any) (any, error) {
		return s.produce1(ctx, req.(*batchJob), x, acl, rule)
	})
}

// requestHead is what a ProduceRequest says besides its records.
type requestHead struct {
	id      uint64
	acks    int // an acks index: 0, 1, 2 for -1
	atomic  bool
	noSpool bool // spool: false
}

// readRequest reads the ProduceRequest in j.body into j's records (slices
// of j.body) and checks what the core does not: the message's shape,
// acks, atomic, the request's topic, the number of records, each record's
// headers. Fields come in any order and unknown ones are skipped, as
// protobuf reads them. A refused request's id is read all the same.
func (s *Server) readRequest(j *batchJob) (requestHead, *batchError) {
	h, e := s.readFields(j)
	if e != nil {
		h.id = requestID(j.body)
	}
	return h, e
}

// requestID is the id of a ProduceRequest, as far as it can be read.
func requestID(b []byte) uint64 {
	var id uint64
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return id
		}
		b = b[n:]
		if num == 5 && typ == protowire.VarintType {
			id, n = protowire.ConsumeVarint(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return id
		}
		b = b[n:]
	}
	return id
}

func (s *Server) readFields(j *batchJob) (requestHead, *batchError) {
	h := requestHead{acks: 1}
	var topic []byte
	acks := int32(1)
	recs := j.recs[:0]
	b := j.body
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return h, malformed(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.VarintType: // acks
			v, m := protowire.ConsumeVarint(b)
			acks, n = int32(v), m
		case num == 2 && typ == protowire.VarintType: // atomic
			v, m := protowire.ConsumeVarint(b)
			h.atomic, n = v != 0, m
		case num == 3 && typ == protowire.BytesType: // topic
			// Every occurrence is checked (the last one wins, but
			// protobuf refuses the message for any of them).
			if topic, n = protowire.ConsumeBytes(b); n >= 0 && !utf8.Valid(topic) {
				j.recs = recs
				return h, refuse(400, -1, "topic is not UTF-8")
			}
		case num == 4 && typ == protowire.BytesType: // records
			var rb []byte
			rb, n = protowire.ConsumeBytes(b)
			if n < 0 {
				break
			}
			i := len(recs)
			if i == s.cfg.MaxBatchRecords {
				j.recs = recs
				return h, refuse(413, i, "more than max_batch_records ("+strconv.Itoa(i)+") records")
			}
			recs = nextRecord(recs, nil)
			if reason := readRecord(rb, &recs[i]); reason != "" {
				j.recs = recs
				return h, refuse(400, i, reason)
			}
		case num == 5 && typ == protowire.VarintType: // id
			h.id, n = protowire.ConsumeVarint(b)
		case num == 6 && typ == protowire.VarintType: // spool
			v, m := protowire.ConsumeVarint(b)
			h.noSpool, n = v == 0, m
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			j.recs = recs
			return h, malformed(n)
		}
		b = b[n:]
	}
	j.recs = recs
	switch acks {
	case 0:
		h.acks = 0
	case 1:
	case -1:
		h.acks = 2
	default:
		return h, refuse(400, -1, "acks must be 0, 1 or -1, got "+strconv.Itoa(int(acks)))
	}
	if h.atomic {
		if h.acks != 2 {
			return h, refuse(400, -1, "atomic needs acks -1 (a Kafka transaction is written to every in-sync replica)")
		}
		if s.txns == nil {
			return h, refuse(400, -1, "atomic batches are off (transactional_producers: 0)")
		}
	}
	if len(topic) > 0 {
		if reason := checkTopicName(topic); reason != "" {
			return h, refuse(400, -1, reason)
		}
		for i := range recs {
			if len(recs[i].topic) == 0 {
				recs[i].topic = topic
			}
		}
	}
	if len(recs) == 0 {
		return h, refuse(400, -1, "no records")
	}
	// A record may not pass an ext field off as kproxy's, which the
	// caller adds (callExt): a backend takes ip for the client's address.
	if berr := s.forgedExtField(recs); berr != nil {
		return h, berr
	}
	return h, nil
}

// consumeTag is protowire.ConsumeTag, refusing field numbers above the
// largest valid one as protobuf does.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0] >= 1<<3 && b[0] < 0x80 {
		// A tag of one byte (fields 1 to 15, every field of kproxy's
		// messages), read inline: a tag a record field.
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1
	}
	num, typ, n := protowire.ConsumeTag(b)
	if n >= 0 && num > protowire.MaxValidNumber {
		return 0, 0, -2 // errCodeFieldNumber
	}
	return num, typ, n
}

func malformed(n int) *batchError {
	return refuse(400, -1, "request is not a ProduceRequest: "+protowire.ParseError(n).Error())
}

// readRecord reads a Record message into r; it returns what is wrong
// with it, or "".
func readRecord(b []byte, r *batchRecord) string {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return "not a Record: " + protowire.ParseError(n).Error()
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			if r.topic, n = protowire.ConsumeBytes(b); n >= 0 && !utf8.Valid(r.topic) {
				return "record topic is not UTF-8" // a proto string; protobuf refuses it too
			}
		case num == 2 && typ == protowire.BytesType:
			r.key, n = protowire.ConsumeBytes(b)
		case num == 3 && typ == protowire.BytesType:
			r.value, n = protowire.ConsumeBytes(b)
		case num == 4 && typ == protowire.BytesType:
			var hb []byte
			if hb, n = protowire.ConsumeBytes(b); n < 0 {
				break
			}
			if len(r.headers) == maxRecordHeaders {
				return "more than " + strconv.Itoa(maxRecordHeaders) + " headers"
			}
			hd, reason := readHeader(hb)
			if reason != "" {
				return reason
			}
			r.headers = append(r.headers, hd)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return "not a Record: " + protowire.ParseError(n).Error()
		}
		b = b[n:]
	}
	if len(r.key) == 0 {
		r.key = nil // no key: any partition
	}
	if r.value == nil {
		r.value = emptyValue // absent (proto3 sends no empty bytes): written empty, not null
	}
	return repeatedHeader(r.headers)
}

// readHeader reads a Header message.
func readHeader(b []byte) (kgo.RecordHeader, string) {
	var key, value []byte
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return kgo.RecordHeader{}, "not a Header: " + protowire.ParseError(n).Error()
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			if key, n = protowire.ConsumeBytes(b); n >= 0 && !utf8.Valid(key) {
				return kgo.RecordHeader{}, "a header name is not UTF-8"
			}
		case num == 2 && typ == protowire.BytesType:
			value, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return kgo.RecordHeader{}, "not a Header: " + protowire.ParseError(n).Error()
		}
		b = b[n:]
	}
	if len(key) == 0 {
		return kgo.RecordHeader{}, "a header name is empty"
	}
	if value == nil {
		value = emptyValue
	}
	return kgo.RecordHeader{Key: string(key), Value: value}, ""
}

// answer is the answer to one ProduceRequest, whatever carries it.
type answer struct {
	id         uint64
	status     int
	reason     string
	index      int
	retryAfter int
	results    []recordResult // j's, valid until it is released
}

// refusedAnswer answers a request refused whole: nothing written.
func refusedAnswer(id uint64, e *batchError) answer {
	return answer{id: id, status: e.status, reason: e.reason, index: e.index, retryAfter: e.retryAfter}
}

// outcomeAnswer answers a request whose records were written, or tried to
// be: a result per record.
func outcomeAnswer(id uint64, out batchOutcome) answer {
	a := answer{id: id, status: out.status, index: out.index, results: out.results}
	if out.status != 200 {
		a.reason = out.reason
	}
	if out.status > 500 { // 500: refused alike until a configuration changes
		a.retryAfter = 1
	}
	return a
}

// appendTo appends a as a ProduceResponse message (protobuf, fields in
// order, zero values left out as proto3 does).
func (a *answer) appendTo(b []byte) []byte {
	b = appendVarintField(b, 1, a.id)
	b = appendVarintField(b, 2, uint64(int64(a.status)))
	b = appendStringField(b, 3, a.reason)
	for i := range a.results {
		r := &a.results[i]
		// The result's length is written after it, in the byte kept
		// before it: a result of 127 bytes or less (any without a long
		// reason) is not sized first, nor moved.
		b = append(b, byte(4<<3|protowire.BytesType), 0)
		at := len(b)
		b = appendVarintField(b, 1, uint64(int64(r.partition)))
		b = appendVarintField(b, 2, uint64(r.offset))
		b = appendVarintField(b, 3, uint64(int64(r.status)))
		if r.status != 200 {
			b = appendStringField(b, 4, r.reason)
		}
		if r.status == 202 {
			b = appendVarintField(b, 5, 1)
		}
		b = patchLength(b, at)
	}
	b = appendVarintField(b, 5, uint64(int64(a.index)))
	return appendVarintField(b, 6, uint64(int64(a.retryAfter)))
}

// message is a as the generated type, without its results (a status's
// detail: responseError).
func (a *answer) message() *kproxypb.ProduceResponse {
	return &kproxypb.ProduceResponse{Id: a.id, Status: int32(a.status), Error: a.reason,
		BadIndex: int32(a.index), RetryAfter: int32(a.retryAfter)}
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// patchLength writes the length of the message b[at:] into the byte
// before it, kept for it; a length of two bytes or more moves the message
// to make room.
func patchLength(b []byte, at int) []byte {
	n := len(b) - at
	if n < 0x80 {
		b[at-1] = byte(n)
		return b
	}
	w := protowire.SizeVarint(uint64(n))
	b = append(b, make([]byte, w-1)...)
	copy(b[at+w-1:], b[at:at+n])
	protowire.AppendVarint(b[:at-1], uint64(n))
	return b
}
