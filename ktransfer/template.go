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
		s = s[i+j+1:]
	}
	for _, p := range t.parts {
		if p.kind == litText && strings.ContainsAny(p.text, " \r\n\t") {
			return nil, fmt.Errorf("white space in %q", p.text)
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
	for _, c := range b {
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

func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
}
