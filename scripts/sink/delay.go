package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// delayer holds each push for a fixed time, to the tens of microseconds.
//
// time.Sleep cannot: when the process has nothing else to do, Go's runtime
// waits for its timers in epoll_wait, whose timeout is whole milliseconds,
// so a 5 ms sleep ends after 5.3 ms on average and up to 6 ms. The
// benchmark's ceiling (worker_num / 5 ms) assumes the backend answers after
// 5 ms, so a late sink would lower every rate measured against it. Here one
// goroutine sleeps in nanosleep(2) until the oldest push is due and
// releases it. The delay is the same for every push, so pushes fall due in
// the order they arrive and a FIFO queue is all the scheduling needed.
type delayer struct {
	d time.Duration

	mu      sync.Mutex
	waiting []*delayed
	wake    chan struct{} // the queue was empty and now is not

	held  atomic.Int64 // pushes released
	total atomic.Int64 // nanoseconds they were held, in all
}

type delayed struct {
	due  time.Time
	done chan struct{}
}

var delayedPool = sync.Pool{New: func() any { return &delayed{done: make(chan struct{}, 1)} }}

func newDelayer(d time.Duration) *delayer {
	dl := &delayer{d: d, wake: make(chan struct{}, 1)}
	go dl.run()
	return dl
}

// hold returns d after start, not before.
func (dl *delayer) hold(start time.Time) {
	w := delayedPool.Get().(*delayed)
	w.due = start.Add(dl.d)
	dl.mu.Lock()
	dl.waiting = append(dl.waiting, w)
	first := len(dl.waiting) == 1
	dl.mu.Unlock()
	if first {
		select {
		case dl.wake <- struct{}{}:
		default:
		}
	}
	<-w.done
	dl.held.Add(1)
	dl.total.Add(int64(time.Since(start)))
	delayedPool.Put(w)
}

func (dl *delayer) run() {
	// The thread sleeping for the pushes wakes within the timer slack the
	// kernel allows it: 50 µs by default, 1 µs here.
	runtime.LockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
	for {
		dl.mu.Lock()
		if len(dl.waiting) == 0 {
			dl.mu.Unlock()
			<-dl.wake
			continue
		}
		w := dl.waiting[0]
		dl.mu.Unlock()
		if left := time.Until(w.due); left > 0 {
			ts := syscall.NsecToTimespec(int64(left))
			_ = syscall.Nanosleep(&ts, nil) // EINTR: released a little early, checked again below
			continue
		}
		dl.mu.Lock()
		n := copy(dl.waiting, dl.waiting[1:])
		dl.waiting[n] = nil
		dl.waiting = dl.waiting[:n]
		dl.mu.Unlock()
		w.done <- struct{}{}
	}
}

// mean is how long pushes were held on average.
func (dl *delayer) mean() time.Duration {
	n := dl.held.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(dl.total.Load() / n)
}
