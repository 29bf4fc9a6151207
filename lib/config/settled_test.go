package config

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestSettledWaitsForTheFilesToStopChanging: the reads give what they
// read; Settled returns the first read that the next one repeats, and
// refuses files that change between every read.
func TestSettledWaitsForTheFilesToStopChanging(t *testing.T) {
	old := SettleRead
	SettleRead = time.Millisecond
	t.Cleanup(func() { SettleRead = old })

	reads := []string{"cut", "whole", "whole"}
	n := 0
	v, err := Settled(context.Background(), func() (string, string, error) {
		s := reads[min(n, len(reads)-1)]
		n++
		return s, s, nil
	})
	if err != nil || v != "whole" || n != 3 {
		t.Errorf("a file cut at the first read, whole at the next two: %q %v after %d reads, want %q after 3", v, err, n, "whole")
	}

	n = 0
	_, err = Settled(context.Background(), func() (int, string, error) {
		n++
		return n, strings.Repeat("x", n), nil
	})
	if err == nil || n != settleReads {
		t.Errorf("files changing at every read: %v after %d reads, want a refusal after %d", err, n, settleReads)
	}

	// The same fingerprint with a different error (a secret file read
	// between its writes) is read again too.
	errs := []error{errors.New("secret_file empty"), nil, nil}
	n = 0
	_, err = Settled(context.Background(), func() (int, string, error) {
		e := errs[min(n, len(errs)-1)]
		n++
		return 0, "same", e
	})
	if err != nil || n != 3 {
		t.Errorf("an error at the first read only: %v after %d reads, want none after 3", err, n)
	}
}
