package main

import (
	"sync"
	"testing"
	"time"
)

// TestDelayerNeverEarly: pushes arriving together and apart are each held
// at least the delay, and every one is released.
func TestDelayerNeverEarly(t *testing.T) {
	const d = 2 * time.Millisecond
	dl, err := newDelayer(d)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			time.Sleep(time.Duration(i%20) * 100 * time.Microsecond)
			start := time.Now()
			dl.hold(start)
			if held := time.Since(start); held < d {
				t.Errorf("push released after %v, before %v", held, d)
			}
		})
	}
	wg.Wait()
	if n := dl.held.Load(); n != 200 {
		t.Errorf("%d pushes released, want 200", n)
	}
	if m := dl.mean(); m < d {
		t.Errorf("mean hold %v below %v", m, d)
	}
}
