package spool_test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// A watermark the disk refuses to write is tried again every 100 ms, by
// the tick and by the removal of acked segments: it was logged at Warn at
// each try, 20 lines a second for as long as the disk refused. Now the
// first failure is logged, then one line every 10 s with the count, and
// once at Info when it works again.
func TestWatermarkFailuresLoggedSampled(t *testing.T) {
	var log logBuffer
	s := open(t, spool.Options{Dir: t.TempDir(), Log: log.logger()})
	spool.FailMetaWrites(syscall.EIO)
	t.Cleanup(func() { spool.FailMetaWrites(nil) })
	for i := range 3 {
		seq := appendOne(t, s, rec("t", "v"))
		readN(t, s, 1)
		s.Ack(seq)
		if i == 0 {
			time.Sleep(time.Second) // ten ticks
		}
	}
	time.Sleep(500 * time.Millisecond)
	if n := strings.Count(log.String(), "watermark not written"); n != 1 {
		t.Errorf("%d lines about the watermark's failed writes in 1.5 s, want 1 (then one every 10 s); log:\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "input/output error") {
		t.Errorf("the line does not say the disk's error; log:\n%s", log.String())
	}
	spool.FailMetaWrites(nil)
	waitFor(t, "the watermark written again, the acked segment removed", func() bool {
		st := s.Stats()
		return strings.Contains(log.String(), "watermark written again") && st.Records == 0 && st.Bytes == 0
	})
}
