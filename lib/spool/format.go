package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

const (
	headerLen  = 8       // payload length (uint32 LE), CRC32C of the payload (uint32 LE)
	maxPayload = 1 << 30 // larger lengths are corrupt by definition
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendEntry appends r's entry (header and payload) to b.
func appendEntry(b []byte, r *Record, appended int64) []byte {
	start := len(b)
	b = append(b, make([]byte, headerLen)...)
	b = binary.LittleEndian.AppendUint64(b, uint64(appended))
	b = appendBytes(b, []byte(r.Topic))
	if r.Key == nil {
		b = append(b, 0)
	} else {
		b = binary.AppendUvarint(b, uint64(len(r.Key))+1)
		b = append(b, r.Key...)
	}
	b = appendBytes(b, r.Value)
	b = binary.AppendUvarint(b, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		b = appendBytes(b, []byte(h.Key))
		b = appendBytes(b, h.Value)
	}
	payload := b[start+headerLen:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, castagnoli))
	return b
}

// maxEntryLen is at least the length of r's entry.
func maxEntryLen(r *Record) int {
	n := headerLen + 8 + 4*binary.MaxVarintLen64 + len(r.Topic) + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 2*binary.MaxVarintLen64 + len(h.Key) + len(h.Value)
	}
	return n
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// payload is a decoded entry payload; its slices point into the payload bytes.
type payload struct {
	appended int64
	topic    []byte
	key      []byte
	value    []byte
	headers  []Header
}

// errCorrupt marks what a bad entry, not an I/O error, causes.
var errCorrupt = errors.New("corrupt entry")

var errBadPayload = fmt.Errorf("%w: malformed payload", errCorrupt)

// decodePayload decodes p strictly: every byte must belong to a field.
func decodePayload(p []byte) (payload, error) {
	var d payload
	if len(p) < 8 {
		return d, errBadPayload
	}
	d.appended = int64(binary.LittleEndian.Uint64(p))
	p = p[8:]
	var ok bool
	if d.topic, p, ok = takeBytes(p); !ok {
		return d, errBadPayload
	}
	n, w := binary.Uvarint(p) // key length + 1; 0: no key
	if w <= 0 {
		return d, errBadPayload
	}
	p = p[w:]
	if n > 0 {
		if n-1 > uint64(len(p)) {
			return d, errBadPayload
		}
		d.key, p = p[:n-1:n-1], p[n-1:]
	}
	if d.value, p, ok = takeBytes(p); !ok {
		return d, errBadPayload
	}
	nh, w := binary.Uvarint(p)
	if w <= 0 || nh > uint64(len(p)-w)/2 { // a header takes at least two bytes
		return d, errBadPayload
	}
	p = p[w:]
	if nh > 0 {
		d.headers = make([]Header, nh)
	}
	for i := range d.headers {
		var k []byte
		if k, p, ok = takeBytes(p); !ok {
			return d, errBadPayload
		}
		d.headers[i].Key = string(k)
		if d.headers[i].Value, p, ok = takeBytes(p); !ok {
			return d, errBadPayload
		}
	}
	if len(p) != 0 {
		return d, errBadPayload
	}
	return d, nil
}

func takeBytes(p []byte) (v, rest []byte, ok bool) {
	n, w := binary.Uvarint(p)
	if w <= 0 || n > uint64(len(p)-w) {
		return nil, p, false
	}
	p = p[w:]
	return p[:n:n], p[n:], true
}

// readEntry reads one entry from r, of which at most remain bytes belong
// to the segment, into buf (grown when short) and returns its payload and
// total length. A short or invalid entry is an error saying why.
func readEntry(r *bufio.Reader, buf []byte, remain int64) ([]byte, int64, error) {
	if remain < headerLen {
		return nil, 0, fmt.Errorf("%w: torn header, %d bytes left", errCorrupt, remain)
	}
	var h [headerLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, 0, fmt.Errorf("read header: %w", err)
	}
	n := int64(binary.LittleEndian.Uint32(h[:]))
	if n > maxPayload {
		return nil, 0, fmt.Errorf("%w: length %d too large", errCorrupt, n)
	}
	if n > remain-headerLen {
		return nil, 0, fmt.Errorf("%w: torn entry, length %d, %d bytes left", errCorrupt, n, remain-headerLen)
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, 0, fmt.Errorf("read payload: %w", err)
	}
	if crc32.Checksum(buf, castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
		return nil, 0, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	return buf, headerLen + n, nil
}
