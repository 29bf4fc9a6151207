package config

import (
	"context"
	"fmt"
	"time"
)

// SettleRead is how long Settled waits between two reads of a reload's
// files: a variable for tests.
var SettleRead = 150 * time.Millisecond

// settleReads bounds Settled's reads.
const settleReads = 10

// Settled runs load (a reload's read of its files, giving what it read,
// a fingerprint of the files' contents and its error), waits SettleRead,
// and runs it again, until two reads in a row give the same fingerprint
// and error; it returns the last. A file written in place (truncated,
// then written) is empty or partly written for a moment, and a watcher
// that sends SIGHUP when a file changes sends it in that moment: the
// reload applied whatever was there so far — a kproxy.yaml cut before its
// last clients or its topics_allowed, a ktransfer.yaml cut before its
// last module_enabled entries (those modules stopped). Files still
// changing after settleReads reads are refused; when ctx ends (a stop)
// before two reads agree, ctx's error.
func Settled[T any](ctx context.Context, load func() (T, string, error)) (T, error) {
	var zero T
	v, fp, err := load()
	for range settleReads - 1 {
		timer := time.NewTimer(SettleRead)
		select {
		case <-ctx.Done():
			timer.Stop()
			return zero, ctx.Err()
		case <-timer.C:
		}
		v2, fp2, err2 := load()
		if fp2 == fp && errText(err2) == errText(err) {
			return v2, err2
		}
		v, fp, err = v2, fp2, err2
	}
	_ = v
	return zero, fmt.Errorf("the configuration files changed between each of %d reads %v apart; refused: reload again once they are written", settleReads, SettleRead)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
