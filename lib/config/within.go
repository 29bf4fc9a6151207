package config

import (
	"context"
	"time"
)

// SlowRead is how often Within calls slow while load has not returned:
// a variable for tests.
var SlowRead = 5 * time.Second

// Within runs load, which reads files, and returns what it returns, unless
// ctx ends first: then ctx's error, load left to end on its own (its
// result dropped). A file on a mount that stops answering (an NFS hard
// mount, a FUSE or CSI secret store) held a reload for as long, and the
// stop that waits for the reload with it: the process never exited.
// Every SlowRead until load returns, slow is told how long it has waited:
// a reload that waits so holds up every later one, and said nothing.
func Within[T any](ctx context.Context, slow func(waited time.Duration), load func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1) // load's goroutine never blocks on it
	go func() {
		v, err := load()
		done <- result{v, err}
	}()
	start := time.Now()
	tick := time.NewTicker(SlowRead)
	defer tick.Stop()
	for {
		select {
		case r := <-done:
			return r.v, r.err
		case <-tick.C:
			slow(time.Since(start).Round(time.Second))
		case <-ctx.Done():
			var zero T
			return zero, ctx.Err()
		}
	}
}
