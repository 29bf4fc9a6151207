package kproxy

import (
	"bytes"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/jsonscan"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/msgpackscan"
)

// The body of POST /batch: a msgpack array (or a JSON array) of records,
// each a map {"topic": str, "key": str, "value": any, "headers": {str:
// str}}. Parsing checks the shape only; a record's value is the bytes of
// its own encoding, a slice of the body, never decoded. The records'
// slices point into body, which must outlive them.

// recordError stops a walk at a bad record.
type recordError struct {
	index  int
	status int // 0: 400
	reason string
}

func (e *recordError) Error() string { return e.reason }

// tooMany stops a walk at the first record past max_batch_records.
func tooMany(index int) *recordError {
	return &recordError{index: index, status: 413, reason: "more than max_batch_records (" + strconv.Itoa(index) + ") records"}
}

// nextRecord appends a record of topic to recs, keeping the memory of its
// headers when recs' array held one there (recs are reused: batchJob).
func nextRecord(recs []batchRecord, topic []byte) []batchRecord {
	i := len(recs)
	if i == cap(recs) {
		return append(recs, batchRecord{topic: topic})
	}
	recs = recs[:i+1]
	recs[i] = batchRecord{topic: topic, headers: recs[i].headers[:0]}
	return recs
}

// parseMsgpackBatch reads a msgpack batch into recs (reused); topic (the topic parameter,
// may be empty) applies to records without one.
func parseMsgpackBatch(recs []batchRecord, body, topic []byte, max int) ([]batchRecord, *batchError) {
	recs = recs[:0]
	err := msgpackscan.Elements(body, func(at int) (int, error) {
		i := len(recs)
		if i == max {
			return 0, tooMany(i)
		}
		recs = nextRecord(recs, topic)
		next, reason, err := parseMsgpackRecord(body, at, &recs[i])
		if err != nil && reason == "" {
			reason = "not valid msgpack: " + err.Error()
		}
		if reason != "" {
			return 0, &recordError{index: i, reason: reason}
		}
		return next, nil
	})
	return recs, batchParseError(err, len(recs), "msgpack")
}

// parseMsgpackRecord reads the record at body[at] in one pass: the index
// after it, or what is wrong with it (a reason), or a msgpack error.
func parseMsgpackRecord(body []byte, at int, r *batchRecord) (int, string, error) {
	var seen fields
	reason := ""
	next, err := msgpackscan.MapAt(body, at, func(k, v []byte) error {
		name, ok := msgpackscan.Bytes(k)
		if !ok {
			reason = "a field name is not a string"
			return errStop
		}
		field := seen.see(name)
		switch field {
		case fieldTopic:
			if r.topic, ok = msgpackscan.Bytes(v); !ok || len(r.topic) == 0 {
				reason = "topic must be a non-empty string"
			}
		case fieldKey:
			if len(v) == 1 && v[0] == 0xc0 { // nil: no key
				break
			}
			if r.key, ok = msgpackscan.Bytes(v); !ok {
				reason = "key must be a string (or nil)"
			}
		case fieldValue:
			r.value = v
		case fieldHeaders:
			reason = parseHeaders(r, func(each func(k, v []byte) string) error {
				return msgpackscan.Map(v, func(hk, hv []byte) error {
					name, ok := msgpackscan.Bytes(hk)
					if !ok {
						return errors.New("a header name is not a string")
					}
					val, ok := msgpackscan.Bytes(hv)
					if !ok {
						return errors.New("header " + strconv.Quote(string(name)) + " is not a string")
					}
					if why := each(name, val); why != "" {
						return errors.New(why)
					}
					return nil
				})
			})
		default:
			reason = seen.problem(field, name)
		}
		if reason != "" {
			return errStop
		}
		return nil
	})
	switch {
	case reason != "":
		return 0, reason, nil
	case errors.Is(err, msgpackscan.ErrNotMap):
		if _, err := msgpackscan.Skip(body, at); err != nil {
			return 0, "", err // not msgpack at all
		}
		return 0, "record is not a map", nil
	case err != nil:
		return 0, "", err
	case seen&(1<<fieldValue) == 0:
		return 0, "no value", nil
	}
	return next, "", nil
}

// parseJSONBatch reads a JSON batch, as parseMsgpackBatch does.
func parseJSONBatch(recs []batchRecord, body, topic []byte, max int) ([]batchRecord, *batchError) {
	recs = recs[:0]
	err := jsonscan.Array(body, func(elem []byte) error {
		i := len(recs)
		if i == max {
			return tooMany(i)
		}
		recs = nextRecord(recs, topic)
		if reason := parseJSONRecord(elem, &recs[i]); reason != "" {
			return &recordError{index: i, reason: reason}
		}
		return nil
	})
	if ee := (*jsonscan.ElementError)(nil); errors.As(err, &ee) && ee.Index == max {
		err = tooMany(max) // past the maximum: that refusal, whatever the element holds
	}
	return recs, batchParseError(err, len(recs), "JSON")
}

func parseJSONRecord(elem []byte, r *batchRecord) string {
	if elem[0] != '{' {
		return "record is not an object"
	}
	var seen fields
	reason := ""
	jsonscan.Object(elem, func(k, v []byte) error {
		name, err := jsonString(k) // elem was checked whole: k is a string
		if err != nil {
			reason = "a field name: " + err.Error() // a lone surrogate
			return errStop
		}
		field := seen.see(name)
		switch field {
		case fieldTopic:
			if r.topic, err = jsonString(v); errors.Is(err, errLoneSurrogate) {
				reason = "topic: " + err.Error()
			} else if err != nil || len(r.topic) == 0 {
				reason = "topic must be a non-empty string"
			}
		case fieldKey:
			if string(v) == "null" {
				break
			}
			if r.key, err = jsonString(v); errors.Is(err, errLoneSurrogate) {
				reason = "key: " + err.Error()
			} else if err != nil {
				reason = "key must be a string (or null)"
			}
		case fieldValue:
			r.value = v
		case fieldHeaders:
			if v[0] != '{' {
				reason = "headers must be an object of strings"
				break
			}
			reason = parseHeaders(r, func(each func(k, v []byte) string) error {
				return jsonscan.Object(v, func(hk, hv []byte) error {
					name, err := jsonString(hk)
					if err != nil {
						return errors.New("a header name: " + err.Error())
					}
					val, err := jsonString(hv)
					if errors.Is(err, errLoneSurrogate) {
						return errors.New("header " + strconv.Quote(string(name)) + ": " + err.Error())
					}
					if err != nil {
						return errors.New("header " + strconv.Quote(string(name)) + " is not a string")
					}
					if why := each(name, val); why != "" {
						return errors.New(why)
					}
					return nil
				})
			})
		default:
			reason = seen.problem(field, name)
		}
		if reason != "" {
			return errStop
		}
		return nil
	})
	if reason == "" && seen&(1<<fieldValue) == 0 {
		return "no value"
	}
	return reason
}

// jsonString is the text of the JSON string token s: a slice of s when it
// holds no escape, else a decoded copy. A string with an escaped lone
// surrogate has no UTF-8 text (errLoneSurrogate): decoded as U+FFFD, it
// would be another string than the client's, and two such strings one.
func jsonString(s []byte) ([]byte, error) {
	if len(s) < 2 || s[0] != '"' {
		return nil, errors.New("not a string")
	}
	if bytes.IndexByte(s, '\\') < 0 {
		return s[1 : len(s)-1], nil
	}
	if loneSurrogate(s) {
		return nil, errLoneSurrogate
	}
	t, err := jsonscan.String(s)
	return []byte(t), err
}

var errLoneSurrogate = errors.New("a string with an escaped lone surrogate (\\ud800-\\udfff not in a pair) has no UTF-8 text")

// loneSurrogate reports whether the string token s (checked whole) has a
// \u escape of a surrogate that is not a high one followed by a low one.
func loneSurrogate(s []byte) bool {
	for i := 1; i < len(s)-1; i++ {
		if s[i] != '\\' {
			continue
		}
		if s[i+1] != 'u' {
			i++ // the escaped byte
			continue
		}
		r := hex4(s[i+2 : i+6])
		i += 5
		switch {
		case r < 0xd800 || r > 0xdfff:
		case r >= 0xdc00: // a low one first
			return true
		case i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u':
			if lo := hex4(s[i+3 : i+7]); lo < 0xdc00 || lo > 0xdfff {
				return true
			}
			i += 6
		default:
			return true
		}
	}
	return false
}

// hex4 is the value of four hex digits (checked by the scanner).
func hex4(h []byte) rune {
	var r rune
	for _, c := range h[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// parseHeaders reads a record's headers with walk, which calls each for
// every name and value: at most maxRecordHeaders, names non-empty and
// given once, names UTF-8. It returns the problem, or "".
func parseHeaders(r *batchRecord, walk func(each func(k, v []byte) string) error) string {
	r.headers = r.headers[:0]
	err := walk(func(k, v []byte) string {
		if len(r.headers) == maxRecordHeaders {
			return "more than " + strconv.Itoa(maxRecordHeaders) + " headers"
		}
		if len(k) == 0 {
			return "a header name is empty"
		}
		if !utf8.Valid(k) {
			// A string in Kafka's record format, as in gRPC's Header.
			return "a header name is not UTF-8"
		}
		r.headers = append(r.headers, kgo.RecordHeader{Key: string(k), Value: v})
		return ""
	})
	if errors.Is(err, msgpackscan.ErrNotMap) {
		return "headers must be a map of strings"
	}
	if err != nil {
		return err.Error()
	}
	return repeatedHeader(r.headers)
}

// repeatedHeader names a header given twice, or returns "".
func repeatedHeader(hs []kgo.RecordHeader) string {
	for i := 1; i < len(hs); i++ {
		for j := range i {
			if hs[i].Key == hs[j].Key {
				return "header " + strconv.Quote(hs[i].Key) + " given twice"
			}
		}
	}
	return ""
}

// The fields of a record; fields is the set seen so far.
type fields uint8

const (
	fieldUnknown = iota
	fieldTopic
	fieldKey
	fieldValue
	fieldHeaders
	fieldRepeated
)

// see names the field, or says it is unknown or repeated.
func (f *fields) see(name []byte) int {
	var field int
	switch string(name) {
	case "topic":
		field = fieldTopic
	case "key":
		field = fieldKey
	case "value":
		field = fieldValue
	case "headers":
		field = fieldHeaders
	default:
		return fieldUnknown
	}
	if *f&(1<<field) != 0 {
		return fieldRepeated
	}
	*f |= 1 << field
	return field
}

func (fields) problem(field int, name []byte) string {
	if field == fieldRepeated {
		return "field " + strconv.Quote(string(name)) + " given twice"
	}
	return "unknown field " + strconv.Quote(string(name)) + " (a record has topic, key, value and headers)"
}

var errStop = errors.New("stop")

// batchParseError turns a walk's error into the batch's refusal; n
// records were read.
func batchParseError(err error, n int, format string) *batchError {
	var re *recordError
	var ee *jsonscan.ElementError
	switch {
	case err == nil && n == 0:
		return refuse(400, -1, "no records: send a "+format+" array of at least one record")
	case err == nil:
		return nil
	case errors.As(err, &re):
		return refuse(max(re.status, 400), re.index, re.reason)
	case errors.As(err, &ee):
		return refuse(400, ee.Index, "not valid JSON: "+ee.Err.Error())
	}
	return refuse(400, -1, "body is not a "+format+" array of records: "+err.Error())
}
