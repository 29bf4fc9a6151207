package config

import "context"

// Within runs load, which reads files, and returns what it returns, unless
// ctx ends first: then ctx's error, load left to end on its own (its
// result dropped). A file on a mount that stops answering (an NFS hard
// mount, a FUSE or CSI secret store) held a reload for as long, and the
// stop that waits for the reload with it: the process never exited.
func Within[T any](ctx context.Context, load func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1) // load's goroutine never blocks on it
	go func() {
		v, err := load()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
