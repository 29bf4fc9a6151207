package kmonitor

import (
	"context"
	"testing"
	"time"
)

// While kmonitor's ZooKeeper connection is lost (the session alive) the
// lag is computed from the log end as it stood when ZooKeeper last
// answered (lagFrom). Two cases the first version of this got wrong:
//   - a partition caught up: the log end read before the loss (90) was
//     dropped by forget, the module's offset (100) being past it, and the
//     log end read since (100) came after the loss: the lag turned
//     unknown for the rest of the session, where it is 0;
//   - a link that went silent before the loss was seen (2/3 of the
//     session later): the log end when the loss was seen counts records
//     the module pushed and committed after ZooKeeper last answered; the
//     one as of that answer is used.
func TestLagWhileConnectionLostFromTheLastAnswer(t *testing.T) {
	ctx := context.Background()
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	lagOf := func(s *state, now time.Time, lc lostConn) Lag {
		t.Helper()
		lags := s.snapshot("c", now, time.Minute, "", lc)
		if len(lags) != 1 {
			t.Fatalf("%d lags, want 1: %+v", len(lags), lags)
		}
		return lags[0]
	}

	caught := newState(time.Hour, 0)
	caught.newEpoch()
	caught.setEnd(topicPartition{"t", 0}, 90, at(0), nil, at(0))
	if err := caught.setOffset(ctx, partKey{"m", "t", "0"}, nil, []byte("100")); err != nil {
		t.Fatal(err)
	}
	caught.setEnd(topicPartition{"t", 0}, 100, at(2000), nil, at(2000))
	caught.forget(map[string][]int32{"t": {0}})
	lc := lostConn{answered: at(1000), seen: at(1500)}
	if l := lagOf(caught, at(2500), lc); l.Err != "" || l.Lag != 0 {
		t.Errorf("caught-up partition, connection lost: %+v; want lag 0", l)
	}

	// The log end read first after the last answer (1000, the module's
	// offset), then 1030 before the loss was seen: 0, as of the answer.
	busy := newState(time.Hour, 0)
	busy.newEpoch()
	busy.setEnd(topicPartition{"t", 0}, 900, at(0), nil, at(0))
	if err := busy.setOffset(ctx, partKey{"m", "t", "0"}, nil, []byte("1000")); err != nil {
		t.Fatal(err)
	}
	busy.setEnd(topicPartition{"t", 0}, 1000, at(1100), nil, at(1100))
	busy.setEnd(topicPartition{"t", 0}, 1030, at(2000), nil, at(2000))
	busy.forget(map[string][]int32{"t": {0}})
	if l := lagOf(busy, at(4500), lostConn{answered: at(1000), seen: at(4000)}); l.Err != "" || l.Lag != 0 {
		t.Errorf("caught up as ZooKeeper last answered, 1030 read before the loss was seen: %+v; want lag 0", l)
	}

	// The log went back after the last answer (re-created, truncated):
	// the log end before it says nothing; unknown, not 0.
	back := newState(time.Hour, 0)
	back.newEpoch()
	if err := back.setOffset(ctx, partKey{"m", "t", "0"}, nil, []byte("1000")); err != nil {
		t.Fatal(err)
	}
	back.setEnd(topicPartition{"t", 0}, 5000, at(0), nil, at(0))
	back.setEnd(topicPartition{"t", 0}, 50, at(2000), nil, at(2000))
	back.setEnd(topicPartition{"t", 0}, 1200, at(3000), nil, at(3000))
	back.forget(map[string][]int32{"t": {0}})
	if l := lagOf(back, at(4500), lostConn{answered: at(1000), seen: at(1500)}); l.Err == "" {
		t.Errorf("log went back after the last answer: %+v; want the lag unknown", l)
	}

	silent := newState(time.Hour, 0)
	silent.newEpoch()
	if err := silent.setOffset(ctx, partKey{"m", "t", "0"}, nil, []byte("10")); err != nil {
		t.Fatal(err)
	}
	silent.setEnd(topicPartition{"t", 0}, 13, at(0), nil, at(0))
	silent.setEnd(topicPartition{"t", 0}, 60, at(3000), nil, at(3000)) // produced after the last answer
	lc = lostConn{answered: at(1000), seen: at(4000)}
	if l := lagOf(silent, at(4500), lc); l.Err != "" || l.Lag != 3 {
		t.Errorf("link silent before the loss was seen: %+v; want the lag as ZooKeeper last answered, 3", l)
	}
	if l := lagOf(silent, at(4500), lostConn{}); l.Lag != 50 {
		t.Errorf("connected: %+v; want lag 50", l)
	}
}
