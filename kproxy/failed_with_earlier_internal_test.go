package kproxy

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestFailedWithEarlierTakesKgosDeliveryTimeout: Kafka's client fails the
// records queued behind an earlier one of their partition with that
// record's error: its context's deadline, or kgo's RecordDeliveryTimeout
// when kgo sees that first (ErrRecordTimeout). A record failed so, its own
// deadline not passed, was said to be "not taken within produce_timeout_ms"
// when the error was ErrRecordTimeout (a fresh-clone run of
// TestGRPCRecordFailedWithAnEarlierOneNamesItsDeadline met it under load).
func TestFailedWithEarlierTakesKgosDeliveryTimeout(t *testing.T) {
	live := context.Background()
	past, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		err  error
		own  context.Context
		want bool
	}{
		{context.DeadlineExceeded, live, true},
		{fmt.Errorf("produce: %w", kgo.ErrRecordTimeout), live, true},
		{kgo.ErrRecordTimeout, past, false},
		{context.DeadlineExceeded, past, false},
		{kgo.ErrClientClosed, live, false},
	} {
		if got := failedWithEarlier(tc.err, tc.own); got != tc.want {
			t.Errorf("failedWithEarlier(%v, own done: %v) = %v, want %v", tc.err, tc.own.Err() != nil, got, tc.want)
		}
	}
}
