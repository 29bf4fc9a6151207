// Package runtest runs a service's Run in the background of a test.
package runtest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Start calls run in a goroutine with a context that stop cancels. stop
// waits for run to return (at most limit) and returns its error; it is
// idempotent. At cleanup it runs too, and fails the test with run's error
// unless the test called stop and so saw that error itself.
func Start(t testing.TB, run func(context.Context) error, limit time.Duration) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	var runErr error
	var seen atomic.Bool
	wait := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(limit):
				runErr = fmt.Errorf("the run did not return %v after cancel", limit)
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := wait(); err != nil && !seen.Load() {
			t.Errorf("Run: %v", err)
		}
	})
	return func() error {
		seen.Store(true)
		return wait()
	}
}

// Log is a log destination a test reads while the goroutines of what it
// runs write to it.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// WaitFor polls the log every 20 ms until it contains s or limit passes,
// and reports whether it does.
func (l *Log) WaitFor(s string, limit time.Duration) bool {
	for deadline := time.Now().Add(limit); !strings.Contains(l.String(), s); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}
