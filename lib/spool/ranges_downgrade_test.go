package spool_test

import (
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestStaleRangesDoNotHideAckedAboveOfADowngrade: new binary stops
// (acked-ranges, watermark W1), the previous binary runs (it ignores
// acked-ranges, appends and acks c, and at its stop writes acked-above
// with W2 and leaves acked-ranges alone), the new binary starts again: the
// stale acked-ranges (W1) made readSkips return nil without reading the
// valid acked-above (W2): a and c were written to Kafka a second time.
func TestStaleRangesDoNotHideAckedAboveOfADowngrade(t *testing.T) {
	dir := t.TempDir()
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	appendOne(t, s, rec("parked", "p"))
	a := appendOne(t, s, rec("t", "a"))
	s.Ack(a)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ranges := filepath.Join(dir, "acked-ranges")
	ranges1, err := os.ReadFile(ranges)
	if err != nil {
		t.Fatal(err)
	}
	// The previous binary's run, emulated: it appends and acks c.
	s, err = spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c := appendOne(t, s, rec("t", "c"))
	s.Ack(c)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ranges2, err := os.ReadFile(ranges)
	if err != nil {
		t.Fatal(err)
	}
	acked := binary.LittleEndian.Uint64(ranges2)
	next := binary.LittleEndian.Uint64(ranges2[8:])
	// What the previous binary writes at its stop: acked-above, one bit
	// per seq from acked on, with W2; acked-ranges (W1) is left as it was.
	old := append([]byte(nil), ranges2[:16]...)
	bits := make([]byte, (next-acked+7)/8)
	for _, q := range []uint64{a, c} {
		bits[(q-acked)/8] |= 1 << ((q - acked) % 8)
	}
	old = append(old, bits...)
	old = binary.LittleEndian.AppendUint32(old, crc32.Checksum(old, crc32.MakeTable(crc32.Castagnoli)))
	if err := os.WriteFile(filepath.Join(dir, "acked-above"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ranges, ranges1, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Stats(); st.Records != 1 {
		t.Errorf("after a downgrade and upgrade: %d records pending, want 1 (p): acked-above (W2=%d,%d) ignored for a stale acked-ranges (W1=%d,%d)",
			st.Records, acked, next, binary.LittleEndian.Uint64(ranges1), binary.LittleEndian.Uint64(ranges1[8:]))
	}
}
