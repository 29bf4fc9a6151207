package kproxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"iter"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/valyala/fasthttp"
)

// Record headers come from two places (DESIGN.md, "Record headers, ext
// fields"): each request header X-Kafka-Header-<name> becomes a record
// header <name> (lower-cased), and the ext fields of ext_headers add the
// request's metadata. Both count toward the record's size.
const (
	kafkaHeaderPrefix = "X-Kafka-Header-"
	// maxKafkaHeaders is the most X-Kafka-Header-* fields a record takes.
	maxKafkaHeaders = 64
	headerRequestID = "X-Request-ID"
	headerXFF       = "X-Forwarded-For"
)

// extFieldNames are the ext fields kproxy knows; each is also the name of
// the record header it adds: ip (the client's address), ua (User-Agent),
// rid (X-Request-ID, generated when absent), ck (Cookie).
var extFieldNames = [...]string{"ip", "ua", "rid", "ck"}

// extField is a set of ext fields, bit i standing for extFieldNames[i].
type extField uint8

const (
	extIP extField = 1 << iota
	extUA
	extRID
	extCK
)

// extFields is ext_headers and trusted_proxies, read once.
type extFields struct {
	on      extField
	trusted []netip.Prefix
	// maxBytes is max_header_bytes: the most a gRPC call's ua, rid and
	// ck may take (callExt), as HTTP's headers may.
	maxBytes int
}

func newExtFields(cfg Config) extFields {
	e := extFields{maxBytes: cfg.MaxHeaderBytes}
	for _, name := range cfg.ExtHeaders {
		e.on |= 1 << slices.Index(extFieldNames[:], name) // Validate checked the names
	}
	for _, t := range cfg.TrustedProxies {
		p, _ := parsePrefix(t) // Validate checked them
		e.trusted = append(e.trusted, p)
	}
	return e
}

func (e *extFields) has(f extField) bool { return e.on&f != 0 }

// reserved reports whether a client's header name is the record header of
// a configured ext field, which the client may not set.
func (e *extFields) reserved(name []byte) bool {
	if e.on == 0 {
		return false
	}
	for i, n := range extFieldNames {
		if e.on&(1<<i) != 0 && strings.EqualFold(string(name), n) {
			return true
		}
	}
	return false
}

// headerPlan is what commit learns of a request's record headers before
// anything is copied; produce then copies them into the record
// (appendHeaders).
type headerPlan struct {
	count int        // record headers
	kafka int        // of which X-Kafka-Header-* fields
	bytes int        // bytes of the values copied
	size  int        // what the headers add to the record in Kafka's format
	ip    netip.Addr // the ip ext field's value
}

func (hp *headerPlan) add(key, value int) {
	hp.count++
	hp.bytes += value
	hp.size += headerSize(key, value)
}

// headerSize is what a record header adds to a record in Kafka's record
// format: its key and value, each after its length as a zigzag varint.
func headerSize(key, value int) int {
	return varintLen(key) + key + varintLen(value) + value
}

// varintLen is the length of n as a zigzag varint.
func varintLen(n int) int {
	u, l := uint64(n)<<1, 1
	for u >= 0x80 {
		u >>= 7
		l++
	}
	return l
}

// kafkaHeaderName returns the record header name of a request header
// X-Kafka-Header-<name> (not yet lower-cased), and whether it is one.
func kafkaHeaderName(key []byte) ([]byte, bool) {
	const prefix = "x-kafka-header-" // kafkaHeaderPrefix lower-cased
	if len(key) < len(prefix) {
		return nil, false
	}
	for i := range len(prefix) { // most headers differ at the first byte
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return nil, false
		}
	}
	return key[len(prefix):], true
}

// planHeaders reads the record headers the request asks for; a reason
// refuses the request (400). Header.All gives the headers fasthttp does not
// keep apart in the order they came (AllInOrder parses them again: four
// times the cost).
func (s *Server) planHeaders(ctx *fasthttp.RequestCtx) (headerPlan, string) {
	var hp headerPlan
	var reason string
	eachRequestHeader(ctx, func(k, v []byte) bool {
		name, ok := kafkaHeaderName(k)
		switch {
		case !ok:
			return true
		case len(name) == 0:
			reason = "header " + kafkaHeaderPrefix + " without a record header name"
		case hp.kafka == maxKafkaHeaders:
			reason = "more than " + strconv.Itoa(maxKafkaHeaders) + " " + kafkaHeaderPrefix + "* headers; a record takes at most " + strconv.Itoa(maxKafkaHeaders)
		case s.ext.reserved(name):
			reason = "record header " + strings.ToLower(string(name)) + " is set by kproxy (ext_headers); " + kafkaHeaderPrefix + string(name) + " is not allowed"
		default:
			hp.kafka++
			hp.add(len(name), len(v))
			return true
		}
		return false
	})
	if reason != "" {
		return hp, reason
	}
	if s.ext.on != 0 {
		s.ext.plan(ctx, &hp)
	}
	// The header count's varint, counted as one byte in recordOverhead.
	hp.size += varintLen(hp.count) - 1
	return hp, ""
}

// plan adds the ext fields to hp.
func (e *extFields) plan(ctx *fasthttp.RequestCtx, hp *headerPlan) {
	h := &ctx.Request.Header
	if e.has(extIP) {
		hp.ip = e.clientIP(ctx)
		var b [64]byte
		hp.add(len("ip"), len(hp.ip.AppendTo(b[:0])))
	}
	if ua := h.UserAgent(); e.has(extUA) && len(ua) > 0 {
		hp.add(len("ua"), len(ua))
	}
	if e.has(extRID) {
		hp.add(len("rid"), len(ctx.Response.Header.Peek(headerRequestID))) // set by requestID
	}
	if e.has(extCK) {
		n := 0
		for c := range cookies(h.RawHeaders()) {
			if n > 0 {
				n += len("; ")
			}
			n += len(c)
		}
		if n > 0 {
			hp.add(len("ck"), n)
		}
	}
}

// appendHeaders appends the record headers hp planned to dst, in the order
// the request gave them, then the ext fields; their values are copied into
// buf, grown once. The values outlive the request: fasthttp reuses its
// buffers when the handler returns.
func (s *Server) appendHeaders(dst []kgo.RecordHeader, buf []byte, ctx *fasthttp.RequestCtx, hp *headerPlan) ([]kgo.RecordHeader, []byte) {
	buf = slices.Grow(buf[:0], hp.bytes)
	if hp.kafka > 0 {
		for k, v := range requestHeaders(ctx) {
			if name, ok := kafkaHeaderName(k); ok {
				dst, buf = appendHeader(dst, buf, s.headerNames.lower(name), v)
			}
		}
	}
	if s.ext.on != 0 {
		dst, buf = s.ext.appendTo(dst, buf, ctx, hp.ip)
	}
	return dst, buf
}

// appendTo appends the ext fields' record headers (ip, ua, rid, ck, as
// planned by plan; ip is its client address) to dst, their values copied
// into buf.
func (e *extFields) appendTo(dst []kgo.RecordHeader, buf []byte, ctx *fasthttp.RequestCtx, ip netip.Addr) ([]kgo.RecordHeader, []byte) {
	h := &ctx.Request.Header
	if e.has(extIP) {
		start := len(buf)
		buf = ip.AppendTo(buf)
		dst = append(dst, kgo.RecordHeader{Key: "ip", Value: buf[start:len(buf):len(buf)]})
	}
	if ua := h.UserAgent(); e.has(extUA) && len(ua) > 0 {
		dst, buf = appendHeader(dst, buf, "ua", ua)
	}
	if e.has(extRID) {
		dst, buf = appendHeader(dst, buf, "rid", ctx.Response.Header.Peek(headerRequestID))
	}
	if e.has(extCK) {
		start := len(buf)
		for c := range cookies(h.RawHeaders()) {
			buf = appendCookie(buf, start, c)
		}
		if len(buf) > start {
			dst = append(dst, kgo.RecordHeader{Key: "ck", Value: buf[start:len(buf):len(buf)]})
		}
	}
	return dst, buf
}

// appendCookie appends a Cookie header's value c (trimmed, not empty) to
// the ck ext field's value begun at buf[start:]: several are joined with
// "; " (RFC 6265), whether HTTP headers or gRPC metadata.
func appendCookie[S ~string | ~[]byte](buf []byte, start int, c S) []byte {
	if len(buf) > start {
		buf = append(buf, "; "...)
	}
	return append(buf, c...)
}

// appendHeader appends the record header key: value to dst, the value
// copied into buf.
func appendHeader(dst []kgo.RecordHeader, buf []byte, key string, value []byte) ([]kgo.RecordHeader, []byte) {
	start := len(buf)
	buf = append(buf, value...)
	return append(dst, kgo.RecordHeader{Key: key, Value: nonNil(buf[start:len(buf):len(buf)])}), buf
}

// nonNil keeps an empty header value empty: a nil one is written as null.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// headerNames interns record header names: clients send the same few
// again and again, and a record then does not allocate its names. Readers
// load the map without a lock; a new name replaces it with a copy, until
// maxInternedNames are kept (names past that, which a client making up
// names would send, are allocated per record).
type headerNames struct {
	names atomic.Pointer[map[string]string]
	mu    sync.Mutex // held to add a name
}

const (
	maxInternedNames = 256
	maxInternedLen   = 64
)

// lower returns name lower-cased (ASCII), as a record header name.
func (hn *headerNames) lower(name []byte) string {
	if len(name) > maxInternedLen {
		return strings.ToLower(string(name))
	}
	var b [maxInternedLen]byte
	low := b[:len(name)]
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		low[i] = c
	}
	m := hn.names.Load()
	if m != nil {
		if s, ok := (*m)[string(low)]; ok { // no allocation for the lookup
			return s
		}
	}
	s := string(low)
	if m != nil && len(*m) >= maxInternedNames {
		return s
	}
	hn.mu.Lock()
	defer hn.mu.Unlock()
	old := hn.names.Load()
	next := make(map[string]string, 1)
	if old != nil {
		if len(*old) >= maxInternedNames {
			return s
		}
		next = make(map[string]string, len(*old)+1)
		for k, v := range *old {
			next[k] = v
		}
	}
	next[s] = s
	hn.names.Store(&next)
	return s
}

// cookies yields the values of the request's Cookie headers as received,
// from its raw header lines: once fasthttp has parsed the cookies (All
// does), Peek gives them re-encoded. An HTTP/1.1 client sends one Cookie
// header; several are joined with "; " (RFC 6265), empty ones skipped.
func cookies(raw []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for name, value := range headerLines(raw) {
			if !bytes.EqualFold(name, []byte(fasthttp.HeaderCookie)) {
				continue
			}
			if len(value) > 0 && !yield(value) {
				return
			}
		}
	}
}

// requestHeaders yields the request's header fields, as eachRequestHeader
// calls f with them.
func requestHeaders(ctx *fasthttp.RequestCtx) iter.Seq2[[]byte, []byte] {
	return func(yield func(name, value []byte) bool) { eachRequestHeader(ctx, yield) }
}

// eachRequestHeader calls f with each of the request's header fields, not
// its trailer's, until f returns false: fasthttp adds the trailer fields
// of a chunked body to the same list (Header.All), and a trailer is no
// header (RFC 9110 6.5.1): an X-Kafka-Header-* field there, outside what a
// proxy in front filters and outside max_header_bytes, became a record
// header. A chunked request's fields are read from its raw header lines,
// the others' (no trailer) as fasthttp parsed them.
//
// The paths every request takes call it rather than range over
// requestHeaders: a loop over an iterator the compiler cannot see into
// has its variables, and those of the function it is in, moved to the
// heap (17 → 11 allocations per /commit in BenchmarkCommit).
func eachRequestHeader(ctx *fasthttp.RequestCtx, f func(name, value []byte) bool) {
	if ctx.Request.Header.ContentLength() != -1 { // not chunked: no trailer
		for k, v := range ctx.Request.Header.All() {
			if !f(k, v) {
				return
			}
		}
		return
	}
	for name, value := range headerLines(ctx.Request.Header.RawHeaders()) {
		if !f(name, value) {
			return
		}
	}
}

// headerValue is the value of the request's first header field named
// name, its trailer's left out (requestHeaders): an X-Request-ID in the
// trailer of a chunked body became the rid.
func headerValue(ctx *fasthttp.RequestCtx, name string) []byte {
	if ctx.Request.Header.ContentLength() != -1 { // not chunked: no trailer
		return ctx.Request.Header.Peek(name)
	}
	var found []byte
	eachRequestHeader(ctx, func(n, v []byte) bool {
		if strings.EqualFold(string(n), name) {
			found = v
			return false
		}
		return true
	})
	return found
}

// headerLines yields the name and value of each field of a request's raw
// header lines (RawHeaders), as received but for the white space around
// the value and after the name. A field folded onto the lines after it
// (obs-fold) has them joined with a space, as fasthttp joins them (a line
// of white space too): read line by line, a folded Cookie was cut at the
// fold. (ambiguousLength reads line by line on purpose.)
func headerLines(raw []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func(name, value []byte) bool) {
		var name, value []byte
		for len(raw) > 0 {
			var line []byte
			line, raw, _ = bytes.Cut(raw, []byte("\n"))
			line = bytes.TrimRight(line, "\r")
			if len(line) > 0 && (line[0] == ' ' || line[0] == '\t') {
				if name != nil {
					value = append(append(append([]byte(nil), value...), ' '), bytes.Trim(line, " \t")...)
				}
				continue
			}
			if name != nil && !yield(name, bytes.TrimLeft(value, " \t")) {
				return
			}
			name = nil
			if n, v, ok := bytes.Cut(line, []byte(":")); ok {
				name, value = bytes.TrimRight(n, " \t"), bytes.Trim(v, " \t")
			}
		}
		if name != nil {
			yield(name, bytes.TrimLeft(value, " \t"))
		}
	}
}

// clientIP is the ip ext field: the peer's address, or, when the peer is
// a trusted proxy, the address X-Forwarded-For names (rightmostUntrusted).
func (e *extFields) clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	peer = peer.Unmap()
	if len(e.trusted) == 0 {
		return peer
	}
	return rightmostUntrusted(peer, ctx.Request.Header.PeekAll(headerXFF), e.trusted)
}

// rightmostUntrusted walks the chain of addresses a request passed through,
// from the peer back along X-Forwarded-For (several headers are one list,
// in order), and returns the first address not in trusted: each trusted
// proxy appended the address it got the request from, so the entries left
// of the first untrusted one are whatever the client wrote. When every
// address is trusted it is the left-most; when an entry is not an address
// it is the trusted hop that passed that entry on. The rule of HTTP's
// X-Forwarded-For headers (bytes) and gRPC's x-forwarded-for metadata
// (strings) alike.
func rightmostUntrusted[S ~string | ~[]byte](peer netip.Addr, xff []S, trusted []netip.Prefix) netip.Addr {
	addr := peer
	for h := len(xff) - 1; h >= 0; h-- {
		list := xff[h]
		for len(list) > 0 {
			if !isTrusted(addr, trusted) {
				return addr
			}
			entry := list
			list = list[:0]
			for i := len(entry) - 1; i >= 0; i-- {
				if entry[i] == ',' {
					entry, list = entry[i+1:], entry[:i]
					break
				}
			}
			entry = trimOWS(entry)
			if len(entry) == 0 {
				continue
			}
			a, ok := parseForwarded(string(entry))
			if !ok {
				return addr
			}
			addr = a
		}
	}
	return addr
}

// trimOWS trims the white space (ASCII) around a list entry.
func trimOWS[S ~string | ~[]byte](b S) S {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// parseForwarded reads an X-Forwarded-For entry: an address, or one with
// a port as some proxies write it (1.2.3.4:80, [2001:db8::1]:80).
func parseForwarded(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone(""), true
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parsePrefix reads a trusted_proxies entry: an address (a prefix of its
// full length) or a CIDR.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked(), nil
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// requestID puts the request's X-Request-ID in the answer, or, when the
// rid ext field is on and the request has none, a new one (a random
// UUID); the rid ext field reads it back from the answer.
func (s *Server) requestID(ctx *fasthttp.RequestCtx) {
	if id := headerValue(ctx, headerRequestID); len(id) > 0 {
		ctx.Response.Header.SetBytesV(headerRequestID, id)
		return
	}
	if s.ext.has(extRID) {
		var b [36]byte
		ctx.Response.Header.SetBytesV(headerRequestID, newUUID(&b))
	}
}

// newUUID writes a random (version 4) UUID into b in its text form.
func newUUID(b *[36]byte) []byte {
	var u [16]byte
	rand.Read(u[:])         // never fails (crypto/rand, Go 1.24+)
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // variant 10
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return b[:]
}
