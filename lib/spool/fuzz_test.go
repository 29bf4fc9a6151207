package spool_test

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// FuzzOpen opens a spool whose segment holds any bytes: Open neither fails
// nor panics, keeps a prefix of whole entries and cuts the rest, and Read
// returns what it kept. With framed set, data also comes first as one
// entry with a correct length and CRC, so that its payload is decoded.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		f.Fatal(err)
	}
	for _, recs := range [][]spool.Record{
		{rec("t", "1")},
		{{Topic: "topic", Value: []byte("v")}, {Topic: "", Key: []byte{}, Headers: []spool.Header{{Key: "h", Value: []byte("x")}}}},
	} {
		if _, err := s.Append(recs); err != nil {
			f.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	seg, err := os.ReadFile(segmentsIn(dir)[0])
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seg, false)
	f.Add(seg[:len(seg)-1], false)
	f.Add(seg[8:], true)
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, data []byte, framed bool) {
		if framed {
			var h [8]byte
			binary.LittleEndian.PutUint32(h[:], uint32(len(data)))
			binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)))
			data = append(h[:], append(data, data...)...)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "00000000000000000007.seg"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := spool.Open(spool.Options{Dir: dir})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer s.Close()
		st := s.Stats()
		if st.Bytes+st.Cut+st.Trimmed != int64(len(data)) || st.Records != st.Replayed {
			t.Fatalf("stats %+v for %d bytes", st, len(data))
		}
		if st.Replayed == 0 {
			return
		}
		es := readN(t, s, int(st.Replayed))
		for i, e := range es {
			if e.Seq != 7+uint64(i) {
				t.Fatalf("entry %d: seq %d", i, e.Seq)
			}
		}
	})
}
