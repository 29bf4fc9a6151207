package kmonitor

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// A metadata request sent by a poll before the first ZooKeeper reading
// ended names the topics read so far. A poll after the reading that waits
// on it — answered late (1.5 s) or still under way at its metaWait (3.5 s)
// — must not count as having asked the brokers for every topic
// (zabbix_lld would answer 200 with the whole list, though a partition
// with no offset znode of a topic it did not name is not known yet). A
// later poll asks for them all.
//
// The polls are run one by one (pollOnce), the reading's steps stood in
// for by the state's setters: the timing of a real first reading cannot be
// held to the request's.
func TestLateMetadataAnswerDoesNotCompleteTheFirstDiscovery(t *testing.T) {
	for _, delay := range []time.Duration{1500 * time.Millisecond, 3500 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) { lateMetadataAfterFirstReading(t, delay) })
	}
}

func lateMetadataAfterFirstReading(t *testing.T, delay time.Duration) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 2}, {Name: "b", Partitions: 1}, {Name: "u", Partitions: 3}})
	cl := kafkatest.Client(t, k, kafkaconf.Default())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 7 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "u", Partition: 2, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c := testCluster(t, k)
	live := context.Background()
	var leaders sync.WaitGroup
	poll := func() {
		c.pollOnce(ctx, &leaders)
		if c.metaCh == nil {
			// Else a leader's ListOffsets may wait behind the slow
			// request on the same connection (kfake).
			leaders.Wait()
		}
	}
	w := new(byte)

	// The first reading has found module m1's offset of topic a so far.
	c.state.setOffset(live, partKey{"m1", "a", "0"}, w, []byte("0"))
	poll()
	if len(c.leaders) == 0 {
		t.Fatal("no leaders learnt")
	}

	// The next poll's metadata request (topics a and b) takes delay: the
	// poll goes on with the leaders last learnt after metaWait, and the
	// request stays under way.
	var slow atomic.Bool
	slow.Store(true)
	k.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		named := false
		for _, rt := range req.(*kmsg.MetadataRequest).Topics {
			named = named || rt.Topic != nil && *rt.Topic == "b"
		}
		if named && slow.CompareAndSwap(true, false) {
			k.SleepControl(func() { time.Sleep(delay) })
		}
		return nil, nil, false
	})
	t.Cleanup(k.DropControl)
	c.state.setOffset(live, partKey{"m1", "b", "0"}, w, []byte("0"))
	poll()
	if c.metaCh == nil {
		t.Fatal("the slow metadata request was answered within the poll: nothing to test")
	}

	// The first reading ends: module m2 stores offsets 0 and 1 of topic u,
	// whose node records a count of 2; u/2 has no offset znode.
	c.state.setCount(live, moduleTopic{"m2", "u"}, w, 2, false)
	c.state.setOffset(live, partKey{"m2", "u", "0"}, w, []byte("0"))
	c.state.setOffset(live, partKey{"m2", "u", "1"}, w, []byte("0"))
	c.everRead.Store(true)

	unstoredKnown := func() (bool, []string) {
		var got []string
		found := false
		for _, l := range c.state.snapshot(c.name, time.Now(), c.staleAfter(), "", lostConn{}) {
			got = append(got, l.Module+"/"+l.Topic+"/"+l.Partition+" err="+l.Err)
			found = found || l.Module == "m2" && l.Topic == "u" && l.Partition == "2"
		}
		return found, got
	}
	// Until a poll asks for a, b and u, none counts as the poll after the
	// reading, and the one that does knows u/2.
	for range 20 {
		poll()
		if !c.everReached() {
			continue
		}
		if found, got := unstoredKnown(); !found {
			t.Fatalf("a poll counts as the poll after the reading, but u/2 (no offset znode) is not known: %q", got)
		}
		leaders.Wait()
		return
	}
	t.Fatal("no poll counts as the poll after the reading after 20 polls")
}

// testCluster is a cluster polling k every 100 ms, its polls run by the
// test (pollOnce); its Kafka client is closed at cleanup.
func testCluster(t *testing.T, k *kfake.Cluster) *cluster {
	c := newCluster("test_cluster", ClusterConfig{BrokerHosts: k.ListenAddrs(), Kafka: kafkaconf.Default()},
		BaseConfig{PollIntervalMs: 100, HistoryMinutes: 60}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() {
		c.metaWG.Wait()
		if c.kafka != nil {
			c.kafka.Close()
		}
	})
	return c
}
