// Package msgpackscan reads msgpack without decoding it into objects: it
// checks that bytes hold one well-formed value, finds a string field of a
// map, and walks the elements of an array or the keys and values of a map
// giving the exact bytes of each. Every length in the input is checked against the bytes present
// before it is used, so hostile input costs time proportional to its size
// and no allocation.
package msgpackscan

import (
	"encoding/binary"
	"errors"
	"fmt"
)

var errTruncated = errors.New("msgpack value is truncated")

// Valid reports whether b holds exactly one well-formed msgpack value.
func Valid(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty body")
	}
	i, err := Skip(b, 0)
	if err != nil {
		return err
	}
	if i != len(b) {
		return fmt.Errorf("%d trailing bytes after the msgpack value", len(b)-i)
	}
	return nil
}

// Skip walks the one value starting at b[i] and returns the index after it.
// It keeps a count of values still to read instead of recursing, so nesting
// depth costs nothing, and a header claiming billions of elements fails as
// soon as the bytes run out.
func Skip(b []byte, i int) (int, error) {
	pending := uint64(1) // values still to read
	for pending > 0 {
		if i >= len(b) {
			return 0, errTruncated
		}
		pending--
		c := b[i]
		i++
		var skip, items uint64 // bytes of payload to skip; child values to read
		switch {
		case c <= 0x7f, c >= 0xe0: // positive / negative fixint
		case c <= 0x8f: // fixmap
			items = 2 * uint64(c&0x0f)
		case c <= 0x9f: // fixarray
			items = uint64(c & 0x0f)
		case c <= 0xbf: // fixstr
			skip = uint64(c & 0x1f)
		default:
			n, width, ok := lengthPrefixed(c)
			if !ok {
				return 0, fmt.Errorf("byte 0x%02x at offset %d is not a msgpack type", c, i-1)
			}
			if width > 0 {
				if len(b)-i < width {
					return 0, errTruncated
				}
				n = readLength(b[i:], width)
				i += width
			}
			switch {
			case c == 0xdc || c == 0xdd: // array 16/32
				items = n
			case c == 0xde || c == 0xdf: // map 16/32
				items = 2 * n
			case c >= 0xc7 && c <= 0xc9: // ext 8/16/32: type byte + data
				skip = n + 1
			default:
				skip = n
			}
		}
		if skip > uint64(len(b)-i) {
			return 0, errTruncated
		}
		i += int(skip)
		pending += items
		// every value takes at least one byte
		if pending > uint64(len(b)-i) {
			return 0, errTruncated
		}
	}
	return i, nil
}

// Errors of MapString.
var (
	ErrNotMap   = errors.New("value is not a msgpack map")
	ErrNoString = errors.New("msgpack map has no string at that key")
)

// MapString returns the string stored at key in the msgpack map b. Keys
// of other types are skipped.
func MapString(b []byte, key string) (string, error) {
	if len(b) == 0 {
		return "", ErrNotMap
	}
	var n uint64
	i := 1
	switch c := b[0]; {
	case c >= 0x80 && c <= 0x8f:
		n = uint64(c & 0x0f)
	case c == 0xde || c == 0xdf:
		w := 2
		if c == 0xdf {
			w = 4
		}
		if len(b) < 1+w {
			return "", ErrNotMap
		}
		n, i = readLength(b[1:], w), 1+w
	default:
		return "", ErrNotMap
	}
	for range n {
		k, next, isStr := str(b, i)
		var err error
		if !isStr {
			if next, err = Skip(b, i); err != nil {
				return "", ErrNotMap
			}
		}
		if isStr && k == key {
			v, _, ok := str(b, next)
			if !ok {
				return "", ErrNoString
			}
			return v, nil
		}
		if i, err = Skip(b, next); err != nil { // the value
			return "", ErrNotMap
		}
	}
	return "", ErrNoString
}

// Array calls fn with the bytes of each element of the array b (exactly
// one msgpack array), in order, until fn returns an error, which Array
// returns. An array claiming more elements than its bytes hold fails when
// the bytes run out.
func Array(b []byte, fn func(elem []byte) error) error {
	n, i, ok := header(b, 0x90, 0xdc)
	if !ok {
		return errors.New("value is not a msgpack array")
	}
	return each(b, i, n, fn)
}

// Map calls fn with the bytes of each key and its value of the map b
// (exactly one msgpack map), in order, until fn returns an error, which
// Map returns.
func Map(b []byte, fn func(key, value []byte) error) error {
	i, err := MapAt(b, 0, fn)
	if err == nil && i != len(b) {
		err = fmt.Errorf("%d trailing bytes after the msgpack value", len(b)-i)
	}
	return err
}

// MapAt is Map for the map starting at b[i]: it returns the index after
// the map. A value there that is not a map is ErrNotMap.
func MapAt(b []byte, i int, fn func(key, value []byte) error) (int, error) {
	if i >= len(b) {
		return 0, errTruncated
	}
	n, start, ok := header(b[i:], 0x80, 0xde)
	if !ok {
		return 0, ErrNotMap
	}
	i += start
	for ; n > 0; n-- {
		k, err := skipKey(b, i)
		if err != nil {
			return 0, err
		}
		v, err := Skip(b, k)
		if err != nil {
			return 0, err
		}
		if err := fn(b[i:k], b[k:v]); err != nil {
			return 0, err
		}
		i = v
	}
	return i, nil
}

// skipKey is Skip for a map's key: a short string (fixstr), the usual
// key, is not walked.
func skipKey(b []byte, i int) (int, error) {
	if i < len(b) {
		if c := b[i]; c >= 0xa0 && c <= 0xbf && int(c&0x1f) < len(b)-i {
			return i + 1 + int(c&0x1f), nil
		}
	}
	return Skip(b, i)
}

// Elements calls fn with the index where each element of the array b
// (exactly one msgpack array) starts, in order; fn reads the element (with
// Skip, MapAt, …) and returns the index after it, or an error, which
// Elements returns. Unlike Array, it does not walk an element before fn.
func Elements(b []byte, fn func(i int) (int, error)) error {
	n, i, ok := header(b, 0x90, 0xdc)
	if !ok {
		return errors.New("value is not a msgpack array")
	}
	for ; n > 0; n-- {
		if i >= len(b) {
			return errTruncated
		}
		next, err := fn(i)
		if err != nil {
			return err
		}
		i = next
	}
	if i != len(b) {
		return fmt.Errorf("%d trailing bytes after the msgpack value", len(b)-i)
	}
	return nil
}

// header reads the header of an array (fix 0x90, 16-bit 0xdc) or map (fix
// 0x80, 16-bit 0xde) at b[0]: its element count and where they start.
func header(b []byte, fix, wide byte) (n uint64, start int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch c := b[0]; {
	case c&0xf0 == fix:
		return uint64(c & 0x0f), 1, true
	case c == wide && len(b) >= 3:
		return readLength(b[1:], 2), 3, true
	case c == wide+1 && len(b) >= 5:
		return readLength(b[1:], 4), 5, true
	}
	return 0, 0, false
}

// each hands fn the n values starting at b[i], which must end b.
func each(b []byte, i int, n uint64, fn func([]byte) error) error {
	for ; n > 0; n-- {
		next, err := Skip(b, i)
		if err != nil {
			return err
		}
		if err := fn(b[i:next]); err != nil {
			return err
		}
		i = next
	}
	if i != len(b) {
		return fmt.Errorf("%d trailing bytes after the msgpack value", len(b)-i)
	}
	return nil
}

// Bytes returns the payload of b when b is exactly one str or bin value.
func Bytes(b []byte) ([]byte, bool) {
	if len(b) == 0 {
		return nil, false
	}
	var n, start int
	switch c := b[0]; {
	case c >= 0xa0 && c <= 0xbf:
		n, start = int(c&0x1f), 1
	case (c == 0xd9 || c == 0xc4) && len(b) >= 2:
		n, start = int(b[1]), 2
	case (c == 0xda || c == 0xc5) && len(b) >= 3:
		n, start = int(binary.BigEndian.Uint16(b[1:])), 3
	case (c == 0xdb || c == 0xc6) && len(b) >= 5:
		n, start = int(binary.BigEndian.Uint32(b[1:])), 5
	default:
		return nil, false
	}
	if n != len(b)-start {
		return nil, false
	}
	return b[start:], true
}

// str reads the string at b[i]: its text and the index after it, and
// whether there is a whole string there.
func str(b []byte, i int) (string, int, bool) {
	if i >= len(b) {
		return "", i, false
	}
	c := b[i]
	var n, start int
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n, start = int(c&0x1f), i+1
	case c == 0xd9 && i+2 <= len(b):
		n, start = int(b[i+1]), i+2
	case c == 0xda && i+3 <= len(b):
		n, start = int(binary.BigEndian.Uint16(b[i+1:])), i+3
	case c == 0xdb && i+5 <= len(b):
		n, start = int(binary.BigEndian.Uint32(b[i+1:])), i+5
	default:
		return "", i, false
	}
	if n > len(b)-start {
		return "", i, false
	}
	return string(b[start : start+n]), start + n, true
}

// lengthPrefixed describes the type bytes 0xc0–0xdf: either a fixed payload
// size n (width 0), or a big-endian length of width bytes that follows.
func lengthPrefixed(c byte) (n uint64, width int, ok bool) {
	switch c {
	case 0xc0, 0xc2, 0xc3: // nil, false, true
		return 0, 0, true
	case 0xc4, 0xd9, 0xc7: // bin8, str8, ext8
		return 0, 1, true
	case 0xc5, 0xda, 0xc8, 0xdc, 0xde: // bin16, str16, ext16, array16, map16
		return 0, 2, true
	case 0xc6, 0xdb, 0xc9, 0xdd, 0xdf: // bin32, str32, ext32, array32, map32
		return 0, 4, true
	case 0xca: // float32
		return 4, 0, true
	case 0xcb: // float64
		return 8, 0, true
	case 0xcc, 0xd0: // uint8, int8
		return 1, 0, true
	case 0xcd, 0xd1: // uint16, int16
		return 2, 0, true
	case 0xce, 0xd2: // uint32, int32
		return 4, 0, true
	case 0xcf, 0xd3: // uint64, int64
		return 8, 0, true
	case 0xd4: // fixext1: type + 1
		return 2, 0, true
	case 0xd5: // fixext2
		return 3, 0, true
	case 0xd6: // fixext4
		return 5, 0, true
	case 0xd7: // fixext8
		return 9, 0, true
	case 0xd8: // fixext16
		return 17, 0, true
	}
	return 0, 0, false // 0xc1 is never used
}

func readLength(b []byte, width int) uint64 {
	switch width {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(b))
	default:
		return uint64(binary.BigEndian.Uint32(b))
	}
}
