package kproxy

import (
	"encoding/binary"
	"errors"
	"fmt"
)

var errTruncated = errors.New("msgpack value is truncated")

// validMsgpack reports whether b holds exactly one well-formed msgpack
// value, without decoding it into objects. It walks the encoding with a
// count of values still to read, so nesting depth costs nothing and a
// hostile header claiming billions of elements fails as soon as the bytes
// run out.
func validMsgpack(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty body")
	}
	i := 0
	pending := uint64(1) // values still to read
	for pending > 0 {
		if i >= len(b) {
			return errTruncated
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
				return fmt.Errorf("byte 0x%02x at offset %d is not a msgpack type", c, i-1)
			}
			if width > 0 {
				if len(b)-i < width {
					return errTruncated
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
			return errTruncated
		}
		i += int(skip)
		pending += items
		// every value takes at least one byte
		if pending > uint64(len(b)-i) {
			return errTruncated
		}
	}
	if i != len(b) {
		return fmt.Errorf("%d trailing bytes after the msgpack value", len(b)-i)
	}
	return nil
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
