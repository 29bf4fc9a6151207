package kmonitor

import (
	"context"
	"testing"
	"time"
)

// A topic given a new ID (deleted and created again) shows no lag until
// the new log's end is read: the deleted log's end was shown as the new
// one's, a lag 0 s old, for a poll, or until stale when the new log's
// reads failed. That read's lag is a bound (at least). A broker behind
// giving the old ID again afterwards is not another new topic.
func TestNewTopicIDHidesTheDeletedLogsEnd(t *testing.T) {
	s := newState(time.Hour, 0)
	s.newEpoch()
	if err := s.setOffset(context.Background(), partKey{"m", "t", "0"}, nil, []byte("0")); err != nil {
		t.Fatal(err)
	}
	tp := topicPartition{"t", 0}
	lag := func(at time.Time) Lag {
		t.Helper()
		for _, l := range s.snapshot("c", at, time.Minute, "") {
			return l
		}
		t.Fatal("no partition shown")
		return Lag{}
	}
	a, b := [16]byte{1}, [16]byte{2}
	t0 := time.Now()
	s.setTopicID("t", a, t0)
	s.setEnd(tp, 10, t0, nil, t0)
	if l := lag(t0); l.Err != "" || l.Lag != 10 {
		t.Fatalf("before the new ID: %+v, want lag 10", l)
	}

	t1 := t0.Add(time.Second)
	s.setTopicID("t", b, t1)
	if l := lag(t1); l.Err == "" || l.LogEnd != -1 {
		t.Errorf("after the new ID, before its log end is read: %+v, want the lag unknown, no log end", l)
	}
	s.setEnd(tp, 8, t1.Add(-time.Millisecond), nil, t1.Add(time.Millisecond)) // asked before: maybe the deleted log's
	if l := lag(t1); l.Err == "" {
		t.Errorf("after a log end asked before the new ID: %+v, want the lag unknown", l)
	}
	t2 := t1.Add(time.Second)
	s.setEnd(tp, 15, t2, nil, t2)
	if l := lag(t2); l.Err != "" || l.Lag != 15 || l.LagSeconds != 0 || !l.LagSecondsAtLeast {
		t.Errorf("the new log's first end: %+v, want lag 15, 0 s old at least", l)
	}

	t3 := t2.Add(time.Second)
	s.setTopicID("t", a, t3) // a broker behind
	s.setEnd(tp, 16, t3, nil, t3)
	if l := lag(t3); l.Err != "" || l.Lag != 16 || l.LagSeconds != 1 || !l.LagSecondsAtLeast {
		t.Errorf("after a broker behind gave the old ID: %+v, want lag 16, 1 s old at least (the history kept)", l)
	}
}
