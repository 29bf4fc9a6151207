package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// delayer holds each push for a fixed time, to the tens of microseconds.
//
// time.Sleep alone cannot: when the process has nothing else to do, Go's
// runtime waits for its timers in epoll_wait, whose timeout is whole
// milliseconds, so a 5 ms sleep ends after 5.3 ms on average and up to 6 ms.
// The benchmark's ceiling (worker_num / 5 ms) assumes the backend answers
// after 5 ms, so a late sink would lower every rate measured against it.
// Here one goroutine waits on a Go timer for the oldest push and also arms
// a timerfd (nanosecond expiry, no timer slack) for the same instant. The
// timerfd is registered in Go's network poller and never read: its expiry
// only ends the poller's epoll_wait on time, after which the runtime runs
// the timer that is due. When the process is busy its timers are checked at
// every scheduling and need no such wake-up. The delay is the same for every
// push, so pushes fall due in the order they arrive and a FIFO queue is all
// the scheduling needed.
//
// An earlier version slept in nanosleep(2) on a thread of its own. A thread
// blocked in a system call hands its processor over, the runtime's monitor
// then polled every 20 µs, and each release woke a goroutine on another
// thread: a sixth of the sink's CPU, which on two cores shared with the
// pusher being measured came out of the pusher's rate.
type delayer struct {
	d      time.Duration
	wakeup *os.File // the timerfd, in the poller; kept so it stays open
	fd     int      // its descriptor (File.Fd would make it blocking)

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

func newDelayer(d time.Duration) (*delayer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd_create: %w", err)
	}
	// NewFile registers a non-blocking descriptor in the poller.
	dl := &delayer{d: d, wakeup: os.NewFile(uintptr(fd), "timerfd"), fd: fd, wake: make(chan struct{}, 1)}
	go dl.run()
	return dl, nil
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
	timer := time.NewTimer(0)
	<-timer.C
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
			// The timerfd is armed after the timer: it expires when the
			// timer is due or just after, never before it.
			timer.Reset(left)
			spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(left))}
			if err := unix.TimerfdSettime(dl.fd, 0, &spec, nil); err != nil {
				panic(fmt.Sprintf("sink: timerfd_settime: %v", err))
			}
			<-timer.C
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
