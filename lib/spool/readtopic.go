package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// readPos is where the entry seq starts in the segment whose first seq is
// base (ReadTopic's last stop, for its topic's next call).
type readPos struct {
	base, seq uint64
	off       int64
}

// ReadTopic returns topic's entries not acked with seqs in [from, to), in
// seq order: up to n (at least one), stopping once their keys, values and
// headers reach maxBytes. It reads them from the segments again, whatever
// Read returned before: a reader that put a topic aside (kproxy's drain,
// for a topic Kafka does not take now) reads its entries back from there,
// behind Read's position. It does not move Read's position and may be
// called while a Read waits; one caller at a time (the drain).
//
// An entry that no longer passes its checksum is not an error: as Read
// does, ReadTopic drops it and the topic's later entries in its segment
// (below to), logs the file and byte offset at Error and returns the
// entries read before it. The entries dropped leave Pending and
// Stats.Records for Stats.Dropped, not Stats.Cut: the segment keeps its bytes, and the other
// topics' entries in it. Any other error is an I/O error (EIO, EMFILE, a
// segment file gone): nothing is returned and nothing dropped; the caller
// reads again after a pause.
func (s *Spool) ReadTopic(topic string, from, to uint64, n, maxBytes int) ([]Entry, error) {
	s.tmu.Lock()
	defer s.tmu.Unlock()
	if s.tpos == nil {
		s.tpos = map[string]readPos{}
	}
	n = max(n, 1)
	var es []Entry
	bytes := 0
	for from < to && len(es) < n && (len(es) == 0 || bytes < maxBytes) {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		g, ks := s.topicEntriesLocked(topic, from, to, n-len(es))
		var size int64
		if g != nil {
			size = g.size
		}
		s.mu.Unlock()
		if g == nil {
			break
		}
		got, next, off, err := s.readTopicIn(g, size, ks, topic, maxBytes-bytes)
		if errors.Is(err, errCorrupt) {
			from = s.cutTopic(g, topic, next, to, off, err)
		} else if err != nil {
			return nil, err
		} else {
			from = next
		}
		for _, e := range got {
			bytes += len(e.Key) + len(e.Value)
			for _, h := range e.Headers {
				bytes += len(h.Key) + len(h.Value)
			}
		}
		es = append(es, got...)
	}
	if len(es) == 0 {
		delete(s.tpos, topic) // caught up: the position is not needed
	}
	return es, nil
}

// topicEntriesLocked returns the first segment holding an entry of topic
// not acked in [from, to), and the indexes in it of up to n such entries
// (s.mu held).
func (s *Spool) topicEntriesLocked(topic string, from, to uint64, n int) (*segment, []int) {
	idx, ok := s.topicIdx[topic]
	if !ok {
		return nil, nil
	}
	for _, g := range s.segs {
		end := g.base + uint64(len(g.ents))
		if end <= from {
			continue
		}
		if g.base >= to {
			break
		}
		var ks []int
		for k := max(from, g.base) - g.base; k < min(to, end)-g.base && len(ks) < n; k++ {
			if e := g.ents[k]; e.topic == idx && !e.acked {
				ks = append(ks, int(k))
			}
		}
		if len(ks) > 0 {
			return g, ks
		}
	}
	return nil, nil
}

// readTopicIn reads g's entries ks (indexes, increasing) of topic, up to
// maxBytes (at least one), and returns them and the seq to go on from. g
// has limit bytes committed, which hold ks. On a corrupt entry
// (errCorrupt), of topic or of another topic met skipping to the next of
// ks, es holds the entries read before it, and next and off are the seq
// from which topic's entries are cut and the offset of the corrupt entry.
func (s *Spool) readTopicIn(g *segment, limit int64, ks []int, topic string, maxBytes int) (es []Entry, next uint64, off int64, err error) {
	f, err := os.Open(g.path)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("spool: read: %w", err)
	}
	defer f.Close()
	k := 0
	if p, ok := s.tpos[topic]; ok && p.base == g.base && p.seq-g.base <= uint64(ks[0]) {
		k, off = int(p.seq-g.base), p.off
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, off, limit-off), 256<<10)
	var arena []byte
	bytes := 0
	for _, want := range ks {
		for ; k < want; k++ {
			size, err := skipEntry(r, limit-off)
			if err != nil {
				// es, read before: a corrupt entry of another topic
				// cuts topic's entries from want on, not those.
				return es, g.base + uint64(want), off, s.topicReadErr(topic, g, off, err)
			}
			off += size
		}
		if cap(arena)-len(arena) < 64 {
			arena = make([]byte, 0, readArena)
		}
		p, size, err := readEntry(r, arena[len(arena):], limit-off)
		var d payload
		if err == nil {
			if len(p) <= cap(arena)-len(arena) {
				arena = arena[:len(arena)+len(p)]
			}
			if d, err = decodePayload(p); err == nil && string(d.topic) != topic {
				err = fmt.Errorf("%w: topic %q, want %q", errCorrupt, d.topic, topic)
			}
		}
		if err != nil {
			return es, g.base + uint64(want), off, s.topicReadErr(topic, g, off, err)
		}
		es = append(es, Entry{Seq: g.base + uint64(want), Appended: time.Unix(0, d.appended), Record: Record{
			Topic: topic, Key: d.key, Value: d.value, Headers: d.headers,
		}})
		off += size
		k++
		if bytes += len(p); bytes >= maxBytes {
			break
		}
	}
	s.tpos[topic] = readPos{base: g.base, seq: g.base + uint64(k), off: off}
	return es, g.base + uint64(k), off, nil
}

// topicReadErr forgets topic's position (readTopicIn failed reading g at
// off) and returns err with the file and offset.
func (s *Spool) topicReadErr(topic string, g *segment, off int64, err error) error {
	delete(s.tpos, topic)
	return fmt.Errorf("spool: read %s at offset %d: %w", g.path, off, err)
}

// skipEntry reads past one entry of r, of which at most remain bytes
// belong to the segment, without checking its payload, and returns its
// total length.
func skipEntry(r *bufio.Reader, remain int64) (int64, error) {
	if remain < headerLen {
		return 0, fmt.Errorf("%w: torn header, %d bytes left", errCorrupt, remain)
	}
	h, err := r.Peek(headerLen)
	if err != nil {
		return 0, fmt.Errorf("read header: %w", err)
	}
	n := int64(h[0]) | int64(h[1])<<8 | int64(h[2])<<16 | int64(h[3])<<24
	if n > maxPayload {
		return 0, fmt.Errorf("%w: length %d too large", errCorrupt, n)
	}
	if n > remain-headerLen {
		return 0, fmt.Errorf("%w: torn entry, length %d, %d bytes left", errCorrupt, n, remain-headerLen)
	}
	if _, err := r.Discard(headerLen + int(n)); err != nil {
		return 0, fmt.Errorf("read payload: %w", err)
	}
	return headerLen + n, nil
}

// cutTopic drops topic's entries of g from seq at (at byte offset off)
// on, below to: the one at at is corrupt (readTopicIn's error err), and
// seals g, as Read's cut does. It returns the seq after g.
func (s *Spool) cutTopic(g *segment, topic string, at, to uint64, off int64, err error) uint64 {
	s.mu.Lock()
	idx := s.topicIdx[topic]
	end := g.base + uint64(len(g.ents))
	dropped := 0
	for q := at; q < min(to, end); q++ {
		if k := q - g.base; g.ents[k].topic == idx && s.ackLocked(g, k) {
			dropped++
		}
	}
	s.dropped += int64(dropped)
	// Open cuts g at the corrupt entry: an entry appended to g after it
	// would be lost at the next start. Sealed, g takes none (a new
	// segment does).
	g.sealed = true
	s.mu.Unlock()
	s.log.Error("spool: cut a topic's corrupt entry and its later entries in the segment",
		"file", g.path, "offset", off, "topic", topic, "entries", dropped, "reason", err)
	return end
}
