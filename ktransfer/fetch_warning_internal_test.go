package ktransfer

import (
	"context"
	"errors"
	"log/slog"
	"testing"
)

// repeatCounter adds up the "repeated" attributes of the warnings.
type repeatCounter struct{ lines, repeated *int64 }

func (h repeatCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h repeatCounter) Handle(_ context.Context, r slog.Record) error {
	*h.lines++
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "repeated" {
			*h.repeated += a.Value.Int64()
		}
		return true
	})
	return nil
}
func (h repeatCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h repeatCounter) WithGroup(string) slog.Handler      { return h }

// TestFetchErrorRepetitionsLoggedWhenTheErrorChanges: a partition's fetch
// error comes 5 times within 10 s (logged once, 4 repetitions held back),
// then another error comes. The 4 repetitions of the first are logged;
// they were dropped when the new error replaced the partition's entry.
func TestFetchErrorRepetitionsLoggedWhenTheErrorChanges(t *testing.T) {
	var lines, repeated int64
	log := slog.New(repeatCounter{lines: &lines, repeated: &repeated})
	r := &reader{warned: map[int32]fetchWarning{}}
	a, b := errors.New("error a"), errors.New("error b")
	for range 5 {
		r.warnFetchError(log, 0, a)
	}
	r.warnFetchError(log, 0, b)
	r.flushWarnings()
	if repeated != 4 || lines < 2 {
		t.Errorf("error a 5 times, then b: %d lines, %d repetitions reported; want the 4 repetitions of a and a line each for a and b", lines, repeated)
	}
}
