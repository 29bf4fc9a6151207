package ktransfer

import (
	"fmt"
	"strconv"
	"strings"
)

// placeholder kinds of a URI template.
const (
	litText = iota
	phTopic
	phKey
	phTransID
	phPartition
	phMethod
	phEpoch
)

var placeholders = map[string]int{
	"{#TOPIC}": phTopic, "{#KEY}": phKey, "{#TRANSID}": phTransID, "{#PARTITION}": phPartition, "{#METHOD}": phMethod,
	"{#EPOCH}": phEpoch,
}

// template is a parsed protocol.uri: literal text and placeholders.
type template struct {
	parts      []tpart
	needMethod bool
	// valueInPath: {#KEY} or {#METHOD} stands before the '?', where a
	// record's value may make a segment "." or ".." (dotSegment).
	valueInPath bool
}

type tpart struct {
	kind   int
	text   string
	inPath bool // before the template's '?': a value is escaped as a path segment
}

// parseTemplate parses a URI template. It must start with '/'; "{#" must
// open a known placeholder.
func parseTemplate(s string) (*template, error) {
	if !strings.HasPrefix(s, "/") {
		return nil, fmt.Errorf("must start with /")
	}
	t := &template{}
	inPath := true
	for len(s) > 0 {
		i := strings.Index(s, "{#")
		if i < 0 {
			t.parts = append(t.parts, tpart{kind: litText, text: s})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, tpart{kind: litText, text: s[:i]})
			inPath = inPath && !strings.Contains(s[:i], "?")
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unclosed placeholder at %q", s[i:])
		}
		name := s[i : i+j+1]
		kind, ok := placeholders[name]
		if !ok {
			return nil, fmt.Errorf("unknown placeholder %s (known: {#TOPIC} {#KEY} {#TRANSID} {#PARTITION} {#METHOD} {#EPOCH})", name)
		}
		t.parts = append(t.parts, tpart{kind: kind, inPath: inPath})
		t.needMethod = t.needMethod || kind == phMethod
		t.valueInPath = t.valueInPath || inPath && (kind == phKey || kind == phMethod)
		s = s[i+j+1:]
	}
	for _, p := range t.parts {
		switch {
		case p.kind != litText:
		case strings.ContainsAny(p.text, " \r\n\t"):
			return nil, fmt.Errorf("white space in %q", p.text)
		case strings.ContainsFunc(p.text, func(r rune) bool { return r < ' ' || r == 0x7f }):
			// Sent as they are, the HTTP client cannot parse the URL
			// again: the push went to / instead.
			return nil, fmt.Errorf("control character in %q (percent-encode it)", p.text)
		case strings.Contains(p.text, "#"):
			// A fragment is never sent: the push went to the path before it.
			return nil, fmt.Errorf("# in %q: a fragment is not sent (percent-encode it as %%23)", p.text)
		}
	}
	return t, nil
}

// uriVars are one record's values for the placeholders.
type uriVars struct {
	topic     string
	key       []byte
	offset    int64
	partition int32
	epoch     int64 // the partition owner's epoch (fencing)
	method    string
}

// render appends the URI for one record to dst. The key and method are
// query-escaped, but for a space in the path: %20 there (a '+' in a path
// is a plus), so that a backend decoding its path as a path or as a form
// value reads the same; the topic is URL-safe by Kafka's naming rules.
func (t *template) render(dst []byte, v uriVars) []byte {
	for _, p := range t.parts {
		switch p.kind {
		case litText:
			dst = append(dst, p.text...)
		case phTopic:
			dst = append(dst, v.topic...)
		case phKey:
			dst = appendEscaped(dst, v.key, p.inPath)
		case phTransID:
			dst = strconv.AppendInt(dst, v.offset, 10)
		case phPartition:
			dst = strconv.AppendInt(dst, int64(v.partition), 10)
		case phEpoch:
			dst = strconv.AppendInt(dst, v.epoch, 10)
		case phMethod:
			dst = appendEscaped(dst, []byte(v.method), p.inPath)
		}
	}
	return dst
}

// appendEscaped appends b query-escaped (url.QueryEscape), a space as %20
// when inPath, without allocating.
func appendEscaped(dst, b []byte, inPath bool) []byte {
	i := 0
	for i < len(b) && unreserved(b[i]) {
		i++
	}
	dst = append(dst, b[:i]...) // all of it, as a rule
	for _, c := range b[i:] {
		switch {
		case unreserved(c):
			dst = append(dst, c)
		case c == ' ' && !inPath:
			dst = append(dst, '+')
		default:
			dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
		}
	}
	return dst
}

const upperHex = "0123456789ABCDEF"

// dotSegment reports whether v's key or method make a segment of the
// rendered path "." or ".." (a dot also written %2E): a server that
// normalizes paths resolves it, and the push would reach another path than
// the template names. Segments made of the template's own text alone are
// the operator's: not looked at. The rendered path is read as the servers
// in front of a backend may read it: nginx decodes %2F, %5C and %3B before
// it resolves dot segments, and Tomcat and Spring strip path parameters
// (from a ';' on) first; a %XX counts as decoded whether the template, a
// value or both wrote it ("/u/%2{#KEY}" and the key "F..").
func (t *template) dotSegment(v uriVars) bool {
	if !t.valueInPath {
		return false
	}
	var s segment
	for _, p := range t.parts {
		switch p.kind {
		case litText:
			for i := range len(p.text) {
				c := p.text[i]
				if c == '?' {
					return s.end()
				}
				if s.add(c, false) {
					return true
				}
			}
		case phTopic:
			for i := range len(v.topic) {
				if s.add(v.topic[i], false) {
					return true
				}
			}
		case phKey:
			if addValue(&s, v.key) {
				return true
			}
		case phMethod:
			if addValue(&s, v.method) {
				return true
			}
		default: // a number: digits, never a dot, but maybe a %XX's
			var digits [20]byte
			n := v.offset
			switch p.kind {
			case phPartition:
				n = int64(v.partition)
			case phEpoch:
				n = v.epoch
			}
			for _, c := range strconv.AppendInt(digits[:0], n, 10) {
				if s.add(c, false) {
					return true
				}
			}
		}
	}
	return s.end()
}

// segment is the end of the rendered path's current segment that can
// still make it "." or ".." (at most "%2E%2E"); n counts every byte.
type segment struct {
	b       [6]byte
	n       int
	touched bool // a key or method is in it
	params  bool // past a ';': what follows is not looked at
	// esc counts the bytes of a %XX under way ('%', then its first hex
	// digit, hex); escValue: a key or method gave one of them.
	esc      int
	hex      byte
	escValue bool
}

// add adds c, the next byte of the rendered path (value: a key's or
// method's, sent as it is), and reports whether it ends a dot segment a
// key or method made.
func (s *segment) add(c byte, value bool) bool {
	s.touched = s.touched || value
	switch {
	case c == '/' || c == '\\':
		return s.end()
	case c == ';':
		return s.param()
	case c == '%':
		s.esc, s.escValue = 1, value
	case s.esc == 1 && hexVal(c) >= 0:
		s.esc, s.hex, s.escValue = 2, c, s.escValue || value
	case s.esc == 2 && hexVal(c) >= 0:
		s.esc = 0
		switch byte(hexVal(s.hex)<<4 | hexVal(c)) {
		case '/', '\\', ';':
			// Decoded, a separator or a ';': the segment is what came
			// before its '%', and a key or method that wrote part of it
			// chose where the segment ends, and where the next begins.
			if !s.params {
				s.n -= 2
			}
			made := value || s.escValue
			s.touched = s.touched || made
			if hexVal(s.hex) == 3 {
				return s.param()
			}
			dot := s.end()
			s.touched = made
			return dot
		}
	default:
		s.esc = 0
	}
	if s.params {
		return false
	}
	if s.n < len(s.b) {
		s.b[s.n] = c
	}
	s.n++
	return false
}

// addValue adds a key or method as render escapes it, and reports whether
// a segment it ends is a dot segment. A '/' or '\' in it is escaped (%2F,
// %5C), but a server that decodes them before it resolves dot segments
// (nginx does) reads a separator: the parts on either side are segments
// of their own ("/users/..%2Fadmin" reaches /admin there); so is a ';'
// (%3B): nginx passes it on decoded to a backend that strips path
// parameters (Tomcat: "/users/..%3Bx" reaches /users/.. there). Any other
// byte to escape makes its segment no dot segment wherever it stands: its
// escaped form has a %XX that is not %2E ('.' is never escaped), which no
// dot segment holds; it is counted, not copied.
func addValue[T string | []byte](s *segment, b T) bool {
	s.touched = true
	for i := range len(b) {
		switch c := b[i]; {
		case c == '/' || c == '\\':
			if s.end() {
				return true
			}
			s.touched = true
		case c == ';':
			if s.param() {
				return true
			}
		case !unreserved(c):
			s.n += len(s.b) + 1
			s.esc = 0
		default:
			if s.add(c, true) {
				return true
			}
		}
	}
	return false
}

// end reports whether the segment ending is a dot segment a key or method
// made, and starts the next.
func (s *segment) end() bool {
	dot := s.dot()
	*s = segment{}
	return dot
}

// param reports whether the segment before a ';' is a dot segment a key
// or method made; what follows, up to the next separator, is a path
// parameter, not looked at.
func (s *segment) param() bool {
	if s.dot() {
		return true
	}
	s.params, s.esc = true, 0
	return false
}

// dot reports whether the segment so far is a dot segment a key or method
// made.
func (s *segment) dot() bool {
	return s.touched && !s.params && s.n <= len(s.b) && isDotSegment(s.b[:s.n])
}

// hexVal is c's value as a hex digit, -1 when it is none.
func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c|0x20 >= 'a' && c|0x20 <= 'f':
		return int(c|0x20-'a') + 10
	}
	return -1
}

// isDotSegment reports whether seg is "." or ".." once %2E (any case) is
// read as a dot.
func isDotSegment(seg []byte) bool {
	dots := 0
	for i := 0; i < len(seg); dots++ {
		switch {
		case seg[i] == '.':
			i++
		case len(seg)-i >= 3 && seg[i] == '%' && seg[i+1] == '2' && seg[i+2]|0x20 == 'e':
			i += 3
		default:
			return false
		}
	}
	return dots == 1 || dots == 2
}

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
}
