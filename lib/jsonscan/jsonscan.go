// Package jsonscan reads JSON (RFC 8259) without decoding it into objects:
// it checks that bytes hold one well-formed value, and walks the elements
// of an array or the members of an object giving the exact bytes of each,
// so that a value can be passed on byte-for-byte. It never recurses:
// nesting costs a bit per level, and time is linear in the input.
package jsonscan

import (
	"errors"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// SyntaxError is a problem at a byte offset of the input.
type SyntaxError struct {
	Offset int
	msg    string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s at offset %d", e.msg, e.Offset) }

func syntax(i int, msg string) error { return &SyntaxError{Offset: i, msg: msg} }

// ElementError is Array's error for an element that is not one JSON
// value: which element (from 0), and why. A missing element (the input
// ending, or a , or ] where one should start) is a SyntaxError.
type ElementError struct {
	Index int
	Err   error
}

func (e *ElementError) Error() string { return fmt.Sprintf("element %d: %v", e.Index, e.Err) }

func (e *ElementError) Unwrap() error { return e.Err }

// Valid reports whether b holds exactly one JSON value, white space around
// it allowed. Strings must be valid UTF-8.
func Valid(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty, no JSON value")
	}
	if ws(b, 0) == len(b) {
		return errors.New("only white space, no JSON value")
	}
	i, err := Skip(b, 0)
	if err != nil {
		return err
	}
	if i = ws(b, i); i != len(b) {
		return syntax(i, "data after the JSON value")
	}
	return nil
}

// Skip walks the one value starting at b[i] (white space before it
// skipped) and returns the index right after it.
func Skip(b []byte, i int) (int, error) {
	// stack holds a bit per open container: 1 an object, 0 an array; the
	// first 512 levels without allocating.
	var fixed [8]uint64
	stack := fixed[:0]
	depth := 0
	push := func(object bool) {
		if depth/64 == len(stack) {
			stack = append(stack, 0)
		}
		if object {
			stack[depth/64] |= 1 << (depth % 64)
		} else {
			stack[depth/64] &^= 1 << (depth % 64)
		}
		depth++
	}
	inObject := func() bool { return stack[(depth-1)/64]&(1<<((depth-1)%64)) != 0 }
	var err error
	for {
		// A value starts at i (after white space).
		if i = ws(b, i); i >= len(b) {
			return 0, syntax(i, "unexpected end of JSON input")
		}
		switch c := b[i]; {
		case c == '{':
			if i = ws(b, i+1); i < len(b) && b[i] == '}' {
				i++
				break
			}
			push(true)
			if i, err = member(b, i); err != nil {
				return 0, err
			}
			continue
		case c == '[':
			if i = ws(b, i+1); i < len(b) && b[i] == ']' {
				i++
				break
			}
			push(false)
			continue
		case c == '"':
			if i, err = skipString(b, i); err != nil {
				return 0, err
			}
		case c == '-' || c >= '0' && c <= '9':
			if i, err = skipNumber(b, i); err != nil {
				return 0, err
			}
		case c == 't':
			i, err = literal(b, i, "true")
		case c == 'f':
			i, err = literal(b, i, "false")
		case c == 'n':
			i, err = literal(b, i, "null")
		default:
			return 0, syntax(i, fmt.Sprintf("invalid character %q looking for a value", c))
		}
		if err != nil {
			return 0, err
		}
		// A value ended at i: close containers until one goes on.
		for {
			if depth == 0 {
				return i, nil
			}
			if i = ws(b, i); i >= len(b) {
				return 0, syntax(i, "unexpected end of JSON input")
			}
			obj := inObject()
			if b[i] == ',' {
				i++
				if obj {
					if i, err = member(b, ws(b, i)); err != nil {
						return 0, err
					}
				}
				break
			}
			if obj && b[i] == '}' || !obj && b[i] == ']' {
				depth--
				i++
				continue
			}
			if obj {
				return 0, syntax(i, "expected , or } after an object member")
			}
			return 0, syntax(i, "expected , or ] after an array element")
		}
	}
}

// member reads an object member's key and colon at b[i], returning the
// index where its value starts.
func member(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return 0, syntax(i, "expected a string key")
	}
	i, err := skipString(b, i)
	if err != nil {
		return 0, err
	}
	if i = ws(b, i); i >= len(b) || b[i] != ':' {
		return 0, syntax(i, "expected : after an object key")
	}
	return i + 1, nil
}

func ws(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func literal(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return 0, syntax(i, "invalid literal")
	}
	return i + len(lit), nil
}

func skipNumber(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return 0, syntax(start, "invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return 0, syntax(start, "invalid number")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0, syntax(start, "invalid number")
		}
	}
	return i, nil
}

// skipString checks the string starting at b[i] (a quote) and returns the
// index after its closing quote.
func skipString(b []byte, i int) (int, error) {
	start := i
	i++
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return 0, syntax(start, "unterminated string")
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !hex4(b[i+2:i+6]) {
					return 0, syntax(i, `invalid \u escape`)
				}
				i += 6
			default:
				return 0, syntax(i, "invalid escape in string")
			}
		case c < 0x20:
			return 0, syntax(i, "control character in string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				return 0, syntax(i, "invalid UTF-8 in string")
			}
			i += n
		}
	}
	return 0, syntax(start, "unterminated string")
}

func hex4(b []byte) bool {
	for _, c := range b[:4] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// Array calls fn with the bytes of each element of the array b (one JSON
// array, white space around it allowed), in order, until fn returns an
// error, which Array returns.
func Array(b []byte, fn func(elem []byte) error) error {
	i := ws(b, 0)
	if i >= len(b) || b[i] != '[' {
		return syntax(i, "not a JSON array")
	}
	if i = ws(b, i+1); i < len(b) && b[i] == ']' {
		return end(b, i+1)
	}
	for k := 0; ; k++ {
		i = ws(b, i)
		if i >= len(b) || b[i] == ',' || b[i] == ']' {
			// No element here: the array's fault, not an element's.
			return syntax(i, "expected an array element")
		}
		next, err := Skip(b, i)
		if err != nil {
			return &ElementError{Index: k, Err: err}
		}
		if err := fn(b[i:next]); err != nil {
			return err
		}
		if i = ws(b, next); i >= len(b) {
			return syntax(i, "unexpected end of JSON input")
		}
		switch b[i] {
		case ',':
			i++
		case ']':
			return end(b, i+1)
		default:
			return syntax(i, "expected , or ] after an array element")
		}
	}
}

// Object calls fn with the key (the string token, quotes included: see
// String) and the value bytes of each member of the object b (one JSON
// object, white space around it allowed), in order, until fn returns an
// error, which Object returns.
func Object(b []byte, fn func(key, value []byte) error) error {
	i := ws(b, 0)
	if i >= len(b) || b[i] != '{' {
		return syntax(i, "not a JSON object")
	}
	if i = ws(b, i+1); i < len(b) && b[i] == '}' {
		return end(b, i+1)
	}
	for {
		k := ws(b, i)
		vstart, err := member(b, k)
		if err != nil {
			return err
		}
		kend, _ := skipString(b, k) // checked by member
		vstart = ws(b, vstart)
		next, err := Skip(b, vstart)
		if err != nil {
			return err
		}
		if err := fn(b[k:kend], b[vstart:next]); err != nil {
			return err
		}
		if i = ws(b, next); i >= len(b) {
			return syntax(i, "unexpected end of JSON input")
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return end(b, i+1)
		default:
			return syntax(i, "expected , or } after an object member")
		}
	}
}

func end(b []byte, i int) error {
	if i = ws(b, i); i != len(b) {
		return syntax(i, "data after the JSON value")
	}
	return nil
}

var errNotString = errors.New("not one JSON string")

// String decodes the string token s (quotes included, nothing around
// them). Escaped lone surrogates become U+FFFD, as encoding/json does.
func String(s []byte) (string, error) {
	if len(s) < 2 || s[0] != '"' {
		return "", errNotString
	}
	if n, err := skipString(s, 0); err != nil || n != len(s) {
		return "", errNotString
	}
	body := s[1 : len(s)-1]
	esc := false
	for _, c := range body {
		if c == '\\' {
			esc = true
			break
		}
	}
	if !esc {
		return string(body), nil
	}
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); {
		c := body[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch body[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := rune(hexVal(body[i+2 : i+6]))
			i += 6
			if utf16.IsSurrogate(r) {
				if len(body)-i >= 6 && body[i] == '\\' && body[i+1] == 'u' {
					if r2 := utf16.DecodeRune(r, rune(hexVal(body[i+2:i+6]))); r2 != utf8.RuneError {
						out = utf8.AppendRune(out, r2)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // " \ /
			out = append(out, body[i+1])
		}
		i += 2
	}
	return string(out), nil
}

func hexVal(b []byte) uint32 {
	var v uint32
	for _, c := range b[:4] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= uint32(c - '0')
		case c >= 'a' && c <= 'f':
			v |= uint32(c - 'a' + 10)
		default:
			v |= uint32(c - 'A' + 10)
		}
	}
	return v
}
