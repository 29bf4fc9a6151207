package kmonitor

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// A partition whose committed offset stays past the log end (topic
// re-created) is logged unknown once; a re-read of its offset znode (the
// same value committed again, or a new ZooKeeper client reading every
// offset again) between two polls must not log it "known again" and then
// "unknown" again at the next poll.
func TestUnknownLagPastEndNotRelogged(t *testing.T) {
	c, buf := sessionCluster(true)
	live := context.Background()
	k := partKey{"m", "t", "0"}
	tp := topicPartition{"t", 0}
	commit := func() { _ = c.state.setOffset(live, k, nil, []byte("1000")) }
	poll := func() {
		time.Sleep(2 * time.Millisecond)
		now := time.Now()
		c.state.setEnd(tp, 10, now, nil, now)
		time.Sleep(2 * time.Millisecond)
	}
	commit()
	poll()
	c.logUnknown(time.Now()) // unknown: past the end
	poll()
	c.logUnknown(time.Now())
	// the same offset committed again between polls
	commit()
	c.logUnknown(time.Now())
	poll()
	c.logUnknown(time.Now())
	// a new zookeeper client: every offset is read again
	c.state.newEpoch()
	c.logUnknown(time.Now())
	commit()
	c.logUnknown(time.Now())
	poll()
	c.logUnknown(time.Now())
	t.Logf("log:\n%s", buf.String())
	if n := strings.Count(buf.String(), "partition lag unknown"); n != 1 {
		t.Errorf("'partition lag unknown' logged %d times for one cause that never ended, want 1", n)
	}
	if strings.Contains(buf.String(), "known again") {
		t.Errorf("'partition lag known again' logged while the offset stayed past the log end")
	}
}

// kmonitor's first reading: owners/ and offsets/ are followed side by
// side (followOffsets), each offset znode by a watcher of its own; a poll
// while the owners of a topic are listed and some of its offsets not read
// yet must not log those partitions as claimed without an offset.
func TestUnknownLagNotLoggedDuringFirstReading(t *testing.T) {
	c, buf := sessionCluster(false) // the first reading under way
	live := context.Background()
	// offsets/t/0 read first, owners/t listed, offsets/t/1 and 2 not read yet
	_ = c.state.setOffset(live, partKey{"m", "t", "0"}, nil, []byte("5"))
	c.state.setOwned(live, "m", "t", new(byte), []string{"0", "1", "2"})
	c.logUnknown(time.Now()) // a poll during the first reading
	_ = c.state.setOffset(live, partKey{"m", "t", "1"}, nil, []byte("5"))
	_ = c.state.setOffset(live, partKey{"m", "t", "2"}, nil, []byte("5"))
	c.logUnknown(time.Now())
	t.Logf("everRead=%v log:\n%s", c.everRead.Load(), buf.String())
	if strings.Contains(buf.String(), "claimed in owners/") {
		t.Errorf("partitions whose offset znode was not read yet logged as claimed without an offset")
	}
}

// An unstored partition whose log start cannot be read is logged unknown;
// when its topic is deleted from Kafka it leaves the list: the line that
// says so must not blame ZooKeeper ("its offset and claim are gone from
// zookeeper": it never had either, and its count node is still there).
func TestUnknownLagEndNamesNoWrongReason(t *testing.T) {
	c, buf := sessionCluster(true)
	live := context.Background()
	c.state.setCount(live, moduleTopic{"m", "t"}, new(byte), 1, false)
	_ = c.state.setOffset(live, partKey{"m", "t", "0"}, nil, []byte("0"))
	now := time.Now()
	c.state.setParts("t", 2, now, c.staleAfter())
	c.state.setEnd(topicPartition{"t", 0}, 5, now, nil, now)
	c.state.setEnd(topicPartition{"t", 1}, 5, now, nil, now)
	c.state.setStart(topicPartition{"t", 1}, 0, errors.New("NOT_LEADER"), now, now)
	c.logUnknown(now)
	// the topic deleted: the brokers say UNKNOWN_TOPIC for longer than staleAfter
	c.state.setParts("t", -1, now, c.staleAfter())
	later := now.Add(c.staleAfter() + time.Second)
	c.state.setParts("t", -1, later, c.staleAfter())
	c.logUnknown(now)
	t.Logf("log:\n%s", buf.String())
	if !strings.Contains(buf.String(), `msg="partition no longer monitored" module=m topic=t partition=1`) {
		t.Errorf("the partition's end not logged")
	}
	if strings.Contains(buf.String(), "gone from zookeeper") {
		t.Errorf("a partition dropped because its topic left Kafka logged as gone from zookeeper")
	}
}

// sessionCluster is a cluster with a ZooKeeper session, its first reading
// done (read) or under way, logging into buf.
func sessionCluster(read bool) (c *cluster, buf *strings.Builder) {
	buf = &strings.Builder{}
	c = newCluster("c", ClusterConfig{}, BaseConfig{PollIntervalMs: 1000, HistoryMinutes: 60},
		slog.New(slog.NewTextHandler(buf, nil)))
	c.zkDownSince = time.Time{}
	c.everRead.Store(read)
	return c, buf
}
