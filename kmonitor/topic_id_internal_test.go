package kmonitor

import (
	"context"
	"errors"
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
		for _, l := range s.snapshot("c", at, time.Minute, "", lostConn{}) {
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

// TestNewTopicIDForgetsTheDeletedLogsStart attacks README's promise that
// missing data is never healthy, for a partition no process has started:
// its lag counts from its log start, and the deleted topic's start (500,
// after retention) is not the new topic's. The topic created again holds
// 300 records; its log end is read, its log start not yet (or the read
// fails, as it often does right after a creation): the lag is unknown,
// not max(0, 300-500) = 0 shown as known. A start asked for before the
// new ID was seen, answered after it, may be the deleted log's too.
func TestNewTopicIDForgetsTheDeletedLogsStart(t *testing.T) {
	s := newState(time.Hour, 0)
	s.newEpoch()
	live := context.Background()
	w := new(byte)
	s.setCount(live, moduleTopic{"m", "t"}, w, 1, false)
	s.setListed(live, moduleTopic{"m", "t"}, w, []string{"0"}, false)
	if err := s.setOffset(live, partKey{"m", "t", "0"}, nil, []byte("0")); err != nil {
		t.Fatal(err)
	}
	tp := topicPartition{"t", 1} // unstored: above the count, no offset znode
	lag := func(at time.Time) Lag {
		t.Helper()
		for _, l := range s.snapshot("c", at, time.Minute, "", lostConn{}) {
			if l.Partition == "1" {
				return l
			}
		}
		t.Fatal("partition 1 not shown")
		return Lag{}
	}
	a, b := [16]byte{1}, [16]byte{2}
	t0 := time.Now()
	s.setTopicID("t", a, t0)
	s.setParts("t", 2, t0, time.Minute)
	s.setEnd(tp, 600, t0, nil, t0)
	s.setStart(tp, 500, nil, t0, t0)
	if l := lag(t0); l.Err != "" || l.Lag != 100 {
		t.Fatalf("the first topic: %+v, want lag 100 (600 - 500)", l)
	}

	t1 := t0.Add(time.Second)
	s.setTopicID("t", b, t1)
	s.setEnd(tp, 300, t1, nil, t1) // the new log's end, asked after its ID
	if l := lag(t1); l.Err == "" {
		t.Errorf("the new topic's end read, its start not yet: %+v, want the lag unknown (the deleted log's start is not the new one's)", l)
	}
	s.setStart(tp, 0, errors.New("NOT_LEADER"), t1, t1)
	if l := lag(t1); l.Err == "" {
		t.Errorf("the new topic's start refused: %+v, want the lag unknown", l)
	}
	s.setStart(tp, 500, nil, t1.Add(-time.Millisecond), t1.Add(time.Millisecond)) // asked before the new ID
	if l := lag(t1); l.Err == "" {
		t.Errorf("a start asked before the new ID: %+v, want the lag unknown", l)
	}
	t2 := t1.Add(time.Second)
	s.setStart(tp, 0, nil, t2, t2)
	if l := lag(t2); l.Err != "" || l.Lag != 300 {
		t.Errorf("the new topic's start read: %+v, want lag 300", l)
	}

	// Created again once more, its log end seen going back before its new
	// ID: the start read since is the newest log's, and kept.
	t3 := t2.Add(time.Second)
	s.setEnd(tp, 50, t3, nil, t3)
	s.setStart(tp, 0, nil, t3, t3.Add(time.Millisecond))
	t4 := t3.Add(time.Second)
	s.setTopicID("t", [16]byte{3}, t4)
	if l := lag(t4); l.Err != "" || l.Lag != 50 {
		t.Errorf("a new ID after the log end went back, the start read since: %+v, want lag 50", l)
	}

	// Retention moves its start to 40; created again, its log end (30) is
	// seen going back before its new ID, and its start not read: the lag
	// is unknown, not max(0, 30-40) = 0, known.
	s.setStart(tp, 40, nil, t4, t4)
	t5 := t4.Add(time.Second)
	s.setEnd(tp, 30, t5, nil, t5)
	s.setStart(tp, 0, errors.New("NOT_LEADER"), t5, t5)
	if l := lag(t5); l.Err == "" {
		t.Errorf("the log end seen going back, its start not read since: %+v, want the lag unknown", l)
	}
}
