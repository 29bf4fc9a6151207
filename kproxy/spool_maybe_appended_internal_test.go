package kproxy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/spool"
)

// A record the spool failed to write, and whose failed write it could not
// cut from its segment nor close off (spool.ErrMaybeAppended: a restart may
// replay it), is answered 504, may have been written, never 503.
func TestSpoolRefusalMaybeAppendedIs504(t *testing.T) {
	for _, c := range []struct {
		err  error
		code int
	}{
		{fmt.Errorf("%w: %w", spool.ErrMaybeAppended, errors.New("spool: write 1.seg: file too large")), 504},
		{errors.New("spool: write 1.seg: file too large"), 503},
		{spool.ErrFull, 503},
	} {
		it := &spoolItem{err: c.err}
		code, why := it.refusal()
		if code != c.code {
			t.Errorf("%v: %d %q, want %d", c.err, code, why, c.code)
		}
		if want := map[int]string{503: notWritten, 504: mayBeWritten}[c.code]; !strings.HasSuffix(why, want) {
			t.Errorf("%v: reason %q, want it to end with %q", c.err, why, want)
		}
	}
}
