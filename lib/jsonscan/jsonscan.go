// Package jsonscan checks JSON text without decoding it into objects, as
// msgpackscan does for msgpack: whether bytes hold exactly one well-formed
// JSON value (RFC 8259, UTF-8), and where a value inside a larger text ends.
// It never recurses and never allocates on valid input; containers are
// tracked in a fixed stack of MaxDepth bits, so hostile input costs time
// proportional to its size and nothing more.
package jsonscan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of arrays and objects accepted.
const MaxDepth = 512

// Errors of Valid and Skip, besides those naming a byte and its offset.
var (
	ErrTooDeep   = errors.New("JSON value nested deeper than " + strconv.Itoa(MaxDepth) + " levels")
	errTruncated = errors.New("JSON value is truncated")
)

// Valid reports whether b holds exactly one JSON value. White space (space,
// tab, CR, LF) around the value is allowed, as RFC 8259 allows it around
// JSON text; Valid changes nothing, so a caller writing b writes it too.
// Strings must be UTF-8.
func Valid(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty, no JSON value")
	}
	i := SkipSpace(b, 0)
	if i == len(b) {
		return errors.New("only white space, no JSON value")
	}
	end, err := Skip(b, i)
	if err != nil {
		return err
	}
	if j := SkipSpace(b, end); j != len(b) {
		return fmt.Errorf("data after the JSON value at offset %d", j)
	}
	return nil
}

// SkipSpace returns the index of the first byte at or after b[i] that is
// not JSON white space, or len(b).
func SkipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

// Skip walks the one value starting at b[i] (its first byte, not white
// space) and returns the index just after it. What follows the value is
// not looked at.
func Skip(b []byte, i int) (int, error) {
	// objects has bit d set when the container at depth d is an object
	// (else an array).
	var objects [MaxDepth / 64]uint64
	depth := 0
	var err error
value:
	for {
		if i >= len(b) {
			return 0, errTruncated
		}
		switch c := b[i]; c {
		case '{', '[':
			if depth == MaxDepth {
				return 0, ErrTooDeep
			}
			obj := c == '{'
			if obj {
				objects[depth/64] |= 1 << (depth % 64)
			} else {
				objects[depth/64] &^= 1 << (depth % 64)
			}
			depth++
			if i = SkipSpace(b, i+1); i >= len(b) {
				return 0, errTruncated
			}
			if b[i] == c+2 { // '{'+2 is '}', '['+2 is ']'
				i++
				depth--
				break // an empty container: a value read
			}
			if obj {
				if i, err = member(b, i); err != nil {
					return 0, err
				}
			}
			continue value
		case '"':
			i, err = skipString(b, i)
		case 't':
			i, err = literal(b, i, "true")
		case 'f':
			i, err = literal(b, i, "false")
		case 'n':
			i, err = literal(b, i, "null")
		default:
			i, err = skipNumber(b, i)
		}
		if err != nil {
			return 0, err
		}
		// A value was read: close the containers it ends, or go on to
		// the next member of the innermost one.
		for depth > 0 {
			if i = SkipSpace(b, i); i >= len(b) {
				return 0, errTruncated
			}
			obj := objects[(depth-1)/64]&(1<<((depth-1)%64)) != 0
			switch c := b[i]; {
			case c == ',':
				if i = SkipSpace(b, i+1); obj {
					if i, err = member(b, i); err != nil {
						return 0, err
					}
				}
				continue value
			case obj && c == '}', !obj && c == ']':
				i++
				depth--
			default:
				return 0, invalid(b, i)
			}
		}
		return i, nil
	}
}

// member reads an object member's name and colon at b[i] and returns the
// index of its value.
func member(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errTruncated
	}
	if b[i] != '"' {
		return 0, invalid(b, i)
	}
	i, err := skipString(b, i)
	if err != nil {
		return 0, err
	}
	if i = SkipSpace(b, i); i >= len(b) {
		return 0, errTruncated
	}
	if b[i] != ':' {
		return 0, invalid(b, i)
	}
	return SkipSpace(b, i+1), nil
}

// plain marks the bytes a string holds as they are: printable ASCII other
// than '"' and '\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// Eight bytes at a time: every byte 0x01, every byte 0x80.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special is non-zero when one of the eight bytes of x is not plain: a
// quote, a backslash, below 0x20 or above 0x7f (bit tricks from "Bit
// Twiddling Hacks": a byte of v - ones*n & ^v has its high bit set only if
// some byte of v is below n).
func special(x uint64) uint64 {
	quote, backslash := x^(ones*'"'), x^(ones*'\\')
	return ((x-ones*0x20)&^x | (quote-ones)&^quote | (backslash-ones)&^backslash | x) & highs
}

// skipString reads the string whose opening quote is b[i].
func skipString(b []byte, i int) (int, error) {
	j := i + 1
	for {
		for j+8 <= len(b) && special(binary.LittleEndian.Uint64(b[j:])) == 0 {
			j += 8
		}
		for j < len(b) && plain[b[j]] {
			j++
		}
		if j >= len(b) {
			return 0, errTruncated
		}
		switch c := b[j]; {
		case c == '"':
			return j + 1, nil
		case c == '\\':
			if j+1 >= len(b) {
				return 0, errTruncated
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				for k := j + 2; k < j+6; k++ {
					if k >= len(b) {
						return 0, errTruncated
					}
					if !isHex(b[k]) {
						return 0, fmt.Errorf("invalid escape at offset %d", j)
					}
				}
				j += 6
			default:
				return 0, fmt.Errorf("invalid escape at offset %d", j)
			}
		case c < 0x20:
			return 0, fmt.Errorf("control character 0x%02x in a string at offset %d", c, j)
		default: // c >= 0x80
			r, n := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && n <= 1 {
				return 0, fmt.Errorf("invalid UTF-8 at offset %d", j)
			}
			j += n
		}
	}
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipNumber reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i].
func skipNumber(b []byte, i int) (int, error) {
	if b[i] == '-' {
		if i++; i >= len(b) {
			return 0, errTruncated
		}
	}
	switch {
	case b[i] == '0':
		i++
	case isDigit(b[i]):
		i = digits(b, i+1)
	default:
		return 0, invalid(b, i)
	}
	if i < len(b) && b[i] == '.' {
		if i++; i >= len(b) {
			return 0, errTruncated
		}
		if !isDigit(b[i]) {
			return 0, invalid(b, i)
		}
		i = digits(b, i+1)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) {
			return 0, errTruncated
		}
		if !isDigit(b[i]) {
			return 0, invalid(b, i)
		}
		i = digits(b, i+1)
	}
	return i, nil
}

func digits(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

// literal reads the word lit (true, false, null) at b[i].
func literal(b []byte, i int, lit string) (int, error) {
	for k := range len(lit) {
		if i+k >= len(b) {
			return 0, errTruncated
		}
		if b[i+k] != lit[k] {
			return 0, invalid(b, i+k)
		}
	}
	return i + len(lit), nil
}

// invalid is the error for the unexpected byte b[i].
func invalid(b []byte, i int) error {
	if c := b[i]; c < 0x20 || c >= 0x7f {
		return fmt.Errorf("invalid byte 0x%02x at offset %d", c, i)
	}
	return fmt.Errorf("invalid character %q at offset %d", b[i], i)
}
