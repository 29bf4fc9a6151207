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

// A record whose arrival was read before the current span began (its
// handler was paused between reading the clock and asking) gets a deadline
// of its own: the span's ends up to the pause later than its own
// produce_timeout_ms.
func TestDeadlineOfAnEarlierArrival(t *testing.T) {
	d := newDeadlines(time.Second)
	now := time.Now()
	d.at(now)
	earlier := now.Add(-5 * time.Millisecond)
	dl, _ := d.at(earlier).Deadline()
	if own := earlier.Add(time.Second); dl.After(own) {
		t.Errorf("deadline %v after the record's own %v", dl.Sub(own), own)
	}
	if late, _ := d.at(now.Add(time.Millisecond)).Deadline(); !late.Equal(now.Add(time.Second)) {
		t.Errorf("a later arrival within the span got %v, want the span's deadline %v", late, now.Add(time.Second))
	}
	// An arrival within the span before the current one shares that
	// span's context, as it would have without the pause.
	next := now.Add(time.Duration(d.span) + time.Millisecond)
	d.at(next)
	if prev, cur := d.at(now.Add(2*time.Millisecond)), d.at(next); prev != d.at(now) || prev == cur {
		t.Errorf("an arrival of the span before the current one got a context of its own, or the current span's")
	}
}
