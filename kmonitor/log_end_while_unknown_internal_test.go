package kmonitor

import (
	"context"
	"testing"
	"time"
)

// A log end read while the lag is unknown for another reason — ZooKeeper
// away for longer than a session, an offset not read again since the
// client was replaced, a partition claimed without an offset — is shown
// (log_end, kmonitor_log_end_offset): the brokers are still read, and the
// produce rate stays on the dashboards. It vanished whenever the lag was
// unknown, while the committed offset last read stayed; now that offset
// is not shown until read again (their difference is no lag). A stale log
// end is not shown.
func TestLogEndShownWhileLagUnknown(t *testing.T) {
	s := newState(time.Hour, 0)
	s.newEpoch()
	ctx := context.Background()
	if err := s.setOffset(ctx, partKey{"m", "t", "0"}, nil, []byte("4")); err != nil {
		t.Fatal(err)
	}
	s.setOwned(ctx, "m", "t", nil, []string{"0", "1"})
	now := time.Now()
	s.setEnd(topicPartition{"t", 0}, 10, now, nil, now)
	s.setEnd(topicPartition{"t", 1}, 7, now, nil, now)
	ends := func(zkErr string, at time.Time) map[string]Lag {
		out := map[string]Lag{}
		for _, l := range s.snapshot("c", at, time.Minute, zkErr, lostConn{}) {
			out[l.Partition] = l
		}
		return out
	}
	check := func(what string, got map[string]Lag, want map[string]int64) {
		t.Helper()
		for p, end := range want {
			if l := got[p]; l.Err == "" || l.LogEnd != end || l.Committed != -1 {
				t.Errorf("%s, partition %s: %+v, want the lag unknown, log end %d and no committed offset "+
					"(one read before, beside a log end read now, makes a lag that is not)", what, p, l, end)
			}
		}
	}
	check("zookeeper away", ends("zookeeper unreachable", now), map[string]int64{"0": 10, "1": 7})
	s.newEpoch() // the client replaced: offsets not read again yet
	check("offset not read again", ends("", now), map[string]int64{"0": 10, "1": 7})
	check("log ends stale", ends("zookeeper unreachable", now.Add(2*time.Minute)), map[string]int64{"0": -1, "1": -1})
}
