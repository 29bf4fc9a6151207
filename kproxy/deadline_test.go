package kproxy

import (
	"testing"
	"time"
)

// A record's deadline is never later than its own produce_timeout_ms, and at
// most one span earlier; records arriving within a span share a context.
func TestDeadlines(t *testing.T) {
	for _, timeout := range []time.Duration{time.Millisecond, 300 * time.Millisecond, 10 * time.Second} {
		d := newDeadlines(timeout)
		span := time.Duration(d.span)
		contexts := map[any]bool{}
		end := time.Now().Add(50 * time.Millisecond)
		for n := 0; time.Now().Before(end); n++ {
			before := time.Now()
			ctx := d.get()
			after := time.Now()
			dl, ok := ctx.Deadline()
			if !ok {
				t.Fatalf("timeout %v: a deadline context without a deadline", timeout)
			}
			if dl.After(after.Add(timeout)) {
				t.Fatalf("timeout %v: deadline %v after arrival + timeout %v", timeout, dl, after.Add(timeout))
			}
			if early := before.Add(timeout).Sub(dl); early > span {
				t.Fatalf("timeout %v: deadline %v earlier than arrival + timeout, more than the span %v", timeout, early, span)
			}
			contexts[ctx] = true
			if n%1000 == 999 {
				time.Sleep(time.Millisecond)
			}
		}
		if timeout == 10*time.Second && len(contexts) > 50/10+2 {
			t.Errorf("timeout %v: %d contexts in 50 ms, want one per 10 ms span", timeout, len(contexts))
		}
	}
}
