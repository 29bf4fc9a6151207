package spool_test

import (
	"slices"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// TestCloseKeepsEntriesAckedAboveTheWatermark: entries Kafka acknowledged
// after an older one it has not (kproxy's drain with a topic parked, or a
// partition without leader while others drain) are not replayed after a
// clean Close: only the watermark was persisted, and the next start wrote
// every record drained since the oldest unacked one to Kafka again and
// counted them in Stats.Records and Replayed.
func TestCloseKeepsEntriesAckedAboveTheWatermark(t *testing.T) {
	dir := t.TempDir()
	s, err := spool.Open(spool.Options{Dir: dir})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	var seqs []uint64
	for _, r := range []spool.Record{rec("parked", "p0"), rec("t", "a"), rec("t", "b"), rec("parked", "p1"), rec("t", "c")} {
		seqs = append(seqs, appendOne(t, s, r))
	}
	readN(t, s, len(seqs))
	s.Ack(seqs[1], seqs[2], seqs[4]) // t drained; parked's records wait
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	s = open(t, spool.Options{Dir: dir})
	st := s.Stats()
	if st.Records != 2 || st.Replayed != 2 {
		t.Errorf("after restart: records %d, replayed %d; want 2, 2 (the parked topic's)", st.Records, st.Replayed)
	}
	if n := s.Pending("t"); n != 0 {
		t.Errorf("pending of the drained topic after restart: %d, want 0", n)
	}
	es := readN(t, s, 2)
	if got, want := values(es), []string{"p0", "p1"}; !slices.Equal(got, want) {
		t.Errorf("read after restart: %q, want %q (the acked entries not again)", got, want)
	}
	readNone(t, s)

	// Closed again without an ack: the entries skipped stay acked.
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	s = open(t, spool.Options{Dir: dir})
	if st := s.Stats(); st.Records != 2 {
		t.Errorf("after a second restart: records %d, want 2", st.Records)
	}
	if got, want := values(readN(t, s, 2)), []string{"p0", "p1"}; !slices.Equal(got, want) {
		t.Errorf("read after a second restart: %q, want %q", got, want)
	}
	readNone(t, s)
}
