package kmonitor

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// A leader answers the log ends of the partitions it leads at once, but
// not one of them (NOT_LEADER_FOR_PARTITION: it moved, the leaders known
// are out of date), which kmonitor then asks for through its Kafka client,
// and that answer takes 2 s (a slow or hung new leader). The log ends the
// leader gave are stamped when they came: README promises "its answer is
// stamped when it arrives", and the stamp is what the staleness check and
// lag_seconds go by. They were stamped once the other answer came, 2 s
// later, as if just read.
func TestLeaderAnswersStampedWhenTheyCame(t *testing.T) {
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "a", Partitions: 2}})
	cl := kafkatest.Client(t, k, kafkaconf.Default())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for p := range int32(2) {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "a", Partition: p, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	c := testCluster(t, k)
	live := context.Background()
	w := new(byte)
	c.state.setOffset(live, partKey{"m", "a", "0"}, w, []byte("0"))
	c.state.setOffset(live, partKey{"m", "a", "1"}, w, []byte("0"))
	var leaders sync.WaitGroup
	c.pollOnce(ctx, &leaders)
	leaders.Wait()
	if len(c.leaders) == 0 {
		t.Fatal("no leaders learnt")
	}

	const slow = 2 * time.Second
	var asked atomic.Int32
	k.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		r := req.(*kmsg.ListOffsetsRequest)
		n := 0
		for _, rt := range r.Topics {
			n += len(rt.Partitions)
		}
		if n == 1 && r.Topics[0].Partitions[0].Partition == 1 {
			// Partition 1 asked again, alone: slow.
			asked.Add(1)
			k.SleepControl(func() { time.Sleep(slow) })
			return nil, nil, false
		}
		// The leader's request for both: partition 0's log end (1),
		// partition 1 not led here.
		resp := r.ResponseKind().(*kmsg.ListOffsetsResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewListOffsetsResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewListOffsetsResponseTopicPartition()
				sp.Partition, sp.Offset, sp.LeaderEpoch = rp.Partition, 1, 0
				if rp.Partition == 1 {
					sp.ErrorCode, sp.Offset = kerr.NotLeaderForPartition.Code, -1
				}
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	t.Cleanup(k.DropControl)
	start := time.Now()
	c.pollOnce(ctx, &leaders)
	// While partition 1 is asked again, the next poll asks for
	// partition 0 again: it was left in flight until the slow answer.
	time.Sleep(slow / 4)
	c.state.mu.Lock()
	firstAt := c.state.ends[topicPartition{"a", 0}].at
	c.state.mu.Unlock()
	var next sync.WaitGroup
	c.pollOnce(ctx, &next)
	next.Wait()
	c.state.mu.Lock()
	againAt := c.state.ends[topicPartition{"a", 0}].at
	c.state.mu.Unlock()
	if !againAt.After(firstAt) {
		t.Errorf("partition 0, answered, not read again by the next poll while partition 1 was asked elsewhere (read at %v, then %v)", firstAt.Sub(start), againAt.Sub(start))
	}
	leaders.Wait()
	took := time.Since(start)
	if asked.Load() == 0 || took < slow {
		t.Fatalf("partition 1 not asked again through the client (asked %d times, poll took %v)", asked.Load(), took)
	}
	c.state.mu.Lock()
	e0 := *c.state.ends[topicPartition{"a", 0}]
	c.state.mu.Unlock()
	if e0.err != nil || e0.end != 1 {
		t.Fatalf("partition 0's log end: %d, %v; want 1", e0.end, e0.err)
	}
	if late := firstAt.Sub(start); late < 0 || late > slow/4 {
		t.Errorf("partition 0's log end, answered at once, not stamped by %v after the poll began (stamped at %v; the poll took %v): stamped when the slow answer for partition 1 came", slow/4, late, took)
	}
}
