package spool_test

import (
	"bytes"
	"sync"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// A burst of large appends leaves no large buffer behind: the spool kept
// the largest group it ever wrote (up to the roll size, 64 MiB) for the
// life of the process, and copied a lone request's entries into it first.
func TestLargeAppendsLeaveNoLargeBuffer(t *testing.T) {
	s := open(t, spool.Options{Dir: t.TempDir()})
	big := func(n int) []spool.Record {
		recs := make([]spool.Record, n)
		for i := range recs {
			recs[i] = spool.Record{Topic: "t", Value: bytes.Repeat([]byte{'v'}, 256<<10)}
		}
		return recs
	}
	if _, err := s.Append(big(16)); err != nil { // 4 MiB, one request
		t.Fatal(err)
	}
	if c := spool.WriteBufCap(s); c > 0 {
		t.Errorf("after one 4 MiB append the spool keeps a buffer of %d bytes; one request is written from its own", c)
	}
	var wg sync.WaitGroup
	for _, n := range []int{3, 5, 7, 9, 11, 13, 15, 17} { // groups of 0.75 to 28 MiB
		wg.Go(func() {
			for range 3 {
				if _, err := s.Append(big(n)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if c := spool.WriteBufCap(s); c > spool.WriteBufKeep {
		t.Errorf("after a burst of appends of 0.75 to 4.25 MiB the spool keeps a buffer of %d bytes, more than %d", c, spool.WriteBufKeep)
	}
	if st := s.Stats(); st.Records != 16+3*80 {
		t.Errorf("%d records, want %d", st.Records, 16+3*80)
	}
}
