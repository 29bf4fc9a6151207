package kmonitor

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
	"unsafe"
)

// lagging is a state of one partition, t/0, whose module m has committed
// offset next, polled from start every poll.
type lagging struct {
	s    *state
	tp   topicPartition
	now  time.Time
	poll time.Duration
}

func newLagging(t testing.TB, history, poll time.Duration, next int64) *lagging {
	t.Helper()
	l := &lagging{s: newState(history, 0), tp: topicPartition{"t", 0}, now: time.Unix(1_000_000, 0), poll: poll}
	l.commit(t, next)
	return l
}

func (l *lagging) commit(t testing.TB, next int64) {
	t.Helper()
	if err := l.s.setOffset(context.Background(), partKey{"m", "t", "0"}, nil, []byte(strconv.FormatInt(next, 10))); err != nil {
		t.Fatal(err)
	}
}

// step polls once, reading the log end end, as pollOnce does.
func (l *lagging) step(end int64) {
	l.now = l.now.Add(l.poll)
	l.s.forget(l.s.wanted())
	l.s.setEnd(l.tp, end, l.now, nil, l.now)
}

func (l *lagging) changes() []sample { return l.s.ends[l.tp].changes }

func (l *lagging) lag(t testing.TB) Lag {
	t.Helper()
	lags := l.s.snapshot("c", l.now, time.Hour, "", lostConn{})
	if len(lags) != 1 || lags[0].Err != "" {
		t.Fatalf("snapshot: %+v", lags)
	}
	return lags[0]
}

// A partition whose module was stopped holds a log-end change per poll of
// the history; once the module has caught up, none of them can date a lag
// any more, and the array that held them must be let go, whether the
// module catches up at once or little by little while no record arrives
// (the log end no longer moving, nothing is appended that would move the
// changes to a new array). Kept, it is 3,600 changes (141 KiB) per
// partition ever behind for an hour, for as long as kmonitor runs.
func TestLogEndHistoryLetGoOnceCaughtUp(t *testing.T) {
	for _, gradual := range []bool{false, true} {
		l := newLagging(t, time.Hour, time.Second, 0)
		end := int64(0)
		for range 2 * 3600 { // stopped for two hours, 10 records a second
			end += 10
			l.step(end)
		}
		if gradual {
			for next := int64(0); next < end; next += 5 {
				l.commit(t, next)
				l.step(end)
			}
		}
		l.commit(t, end)
		l.step(end)
		if c := l.changes(); cap(c) > 64 {
			t.Errorf("caught up (gradually: %v): %d changes held in an array of %d (%d KiB)", gradual, len(c), cap(c), cap(c)*int(unsafe.Sizeof(sample{}))/1024)
		}
		if got := l.lag(t); got.Lag != 0 || got.LagSeconds != 0 {
			t.Errorf("caught up (gradually: %v): %+v", gradual, got)
		}
	}
}

// poll_interval_ms 100 (the least) and history_minutes 60 (the default):
// a partition behind for longer than the history held 36,000 changes
// (1.1 MiB), every one of them shifted under the state's lock at every
// poll. It holds about maxChanges at most (thinned again once it holds
// twice what the last thinning kept: a change per slice of the history and
// the first and the last), in an array at most twice that.
func TestLogEndHistoryBoundedWhileLagging(t *testing.T) {
	l := newLagging(t, time.Hour, 100*time.Millisecond, 0)
	most, mostCap := 0, 0
	for end := int64(1); end <= 2*36000; end++ { // two hours
		l.step(end)
		most, mostCap = max(most, len(l.changes())), max(mostCap, cap(l.changes()))
	}
	if limit := max(maxChanges, 2*(thinSlices+2)) + 1; most > limit || mostCap > 2*maxChanges {
		t.Errorf("held up to %d changes in an array of up to %d (%d KiB); want at most %d in %d",
			most, mostCap, mostCap*32/1024, limit, 2*maxChanges)
	}
	// Dated by the change before the window: older than the history by
	// less than one slice of it.
	if got := l.lag(t); !got.LagSecondsAtLeast || got.LagSeconds < 3600 || got.LagSeconds > 3600+8 {
		t.Errorf("lag older than the history: %v s (at least: %v), want 3600-3608 s, at least", got.LagSeconds, got.LagSecondsAtLeast)
	}
}

// Thinned, the changes still date a lag as README says: by the first poll
// that saw the log end pass the committed offset, late by at most one poll
// interval and history_minutes/512 (7 s for an hour), never earlier; and a
// log end that went back (the topic created again) still starts a new run.
func TestLagSecondsRightAfterThinning(t *testing.T) {
	const history, poll = time.Hour, 100 * time.Millisecond
	slack := (history/thinSlices + poll).Seconds()
	for _, behindFor := range []time.Duration{10 * time.Second, 5 * time.Minute, 30 * time.Minute, 59 * time.Minute} {
		l := newLagging(t, history, poll, 0)
		end := int64(0)
		polls := int((2*history - behindFor) / poll)
		for range polls { // the module keeps up, then stops
			end++
			l.commit(t, end)
			l.step(end)
		}
		for range int(behindFor / poll) {
			end++
			l.step(end)
		}
		got := l.lag(t)
		want := behindFor.Seconds()
		if got.LagSeconds > want || got.LagSeconds < want-slack || got.LagSecondsAtLeast {
			t.Errorf("behind for %v: lag_seconds %v (at least: %v), want %v less at most %v s, not a lower bound",
				behindFor, got.LagSeconds, got.LagSecondsAtLeast, want, slack)
		}
		if n := len(l.changes()); n > 2*(thinSlices+2)+1 {
			t.Errorf("behind for %v: %d changes held", behindFor, n)
		}
	}

	// Behind for 50 minutes, then the topic is created again (the log end
	// goes back to 0) and 10 minutes of records arrive: they are 10
	// minutes old, whatever was thinned before.
	l := newLagging(t, history, poll, 0)
	end := int64(0)
	for range int(50 * time.Minute / poll) {
		end++
		l.step(end)
	}
	l.commit(t, 0)
	for end = 0; end < int64(10*time.Minute/poll); end++ {
		l.step(end)
	}
	if got := l.lag(t); got.LagSeconds > 600 || got.LagSeconds < 600-slack || got.LagSecondsAtLeast {
		t.Errorf("topic created again 10 min ago: lag_seconds %v (at least: %v), want about 600, not a lower bound",
			got.LagSeconds, got.LagSecondsAtLeast)
	}
}

// One poll of a partition behind for longer than the history, at
// poll_interval_ms 100: the cost of setEnd under the state's lock.
func BenchmarkSetEndLagging(b *testing.B) {
	l := newLagging(b, time.Hour, 100*time.Millisecond, 0)
	end := int64(0)
	for range 36000 {
		end++
		l.step(end)
	}
	b.ReportAllocs()
	for b.Loop() {
		end++
		l.now = l.now.Add(l.poll)
		l.s.setEnd(l.tp, end, l.now, nil, l.now)
	}
}

// A module caught up at log end 100; for 10 minutes the log end cannot be
// read (a broker unreachable from kmonitor, its ACL changed) while the
// module stalls and the end reaches 5000. Read again, the lag was dated
// from that read: 0 s old, not flagged, for records up to 10 minutes old
// (an alert on kmonitor_lag_seconds stayed silent). It is flagged a lower
// bound.
func TestLagAfterLogEndUnreadIsALowerBound(t *testing.T) {
	for _, how := range []string{"reads failed", "no read"} {
		l := newLagging(t, time.Hour, time.Second, 100)
		l.s.blindAfter = 3 * time.Second
		l.step(100)
		for range 600 {
			l.now = l.now.Add(l.poll)
			if how == "reads failed" {
				l.s.setEnd(l.tp, 0, l.now, errors.New("broker unreachable"), l.now)
			}
		}
		l.step(5000)
		if got := l.lag(t); got.Lag != 4900 || !got.LagSecondsAtLeast {
			t.Errorf("%s for 10 minutes, then the log end read past the committed offset: %+v, want lag 4900 with lag_seconds a lower bound", how, got)
		}
		l.step(5000)
		l.step(6000) // seen by a working poll after: still dated by the blind change
		if got := l.lag(t); !got.LagSecondsAtLeast {
			t.Errorf("%s, then polled as usual: %+v, want lag_seconds still a lower bound", how, got)
		}
	}
	// Polled as usual: an estimate, not flagged.
	l := newLagging(t, time.Hour, time.Second, 100)
	l.s.blindAfter = 3 * time.Second
	l.step(100)
	l.step(5000)
	if got := l.lag(t); got.LagSecondsAtLeast {
		t.Errorf("polled every second: %+v, want lag_seconds an estimate", got)
	}
}

// A broker that fails every other read of the log end while the module is
// stalled: each read made good sees a new end after a failed one (blind).
// Kept whatever thinning says, those changes grew by one every other poll
// for the whole history (18,000 an hour at 100 ms polls, days with a long
// history_minutes). They are thinned as any others, the lag they date
// still a lower bound.
func TestFlappingReadsKeepTheHistoryBounded(t *testing.T) {
	l := newLagging(t, time.Hour, 100*time.Millisecond, 0)
	end := int64(0)
	for i := range 18000 {
		if i == 9000 {
			l.commit(t, end) // the lag now begins after a failed read
		}
		l.now = l.now.Add(l.poll)
		l.s.setEnd(l.tp, 0, l.now, errors.New("timed out"), l.now)
		end += 10
		l.step(end)
	}
	if n := len(l.s.ends[l.tp].kept()); n > 2*maxChanges {
		t.Errorf("an hour of reads failing every other poll: %d changes kept, want at most %d", n, 2*maxChanges)
	}
	if got := l.lag(t); !got.LagSecondsAtLeast {
		t.Errorf("the lag began after a failed read: %+v, want lag_seconds a lower bound", got)
	}
}
