package kafkatest

import (
	"fmt"
	"testing"
)

// The leaders of a cluster's topics are spread over its brokers: each
// broker leads as many partitions as another, give or take one, whatever
// the draw. A test of a broker that hangs needs partitions led by the
// others to watch; kfake alone places every leader at random, all of a
// topic's on one broker now and then.
func TestStartBrokersSpreadsLeaders(t *testing.T) {
	var topics []Topic
	for i := range 20 {
		topics = append(topics, Topic{fmt.Sprintf("t%d", i), 3}, Topic{fmt.Sprintf("u%d", i), 8})
	}
	c := StartBrokers(t, 3, topics)
	for _, tp := range topics {
		led := map[int32]int{}
		for p := range tp.Partitions {
			led[c.LeaderFor(tp.Name, p)]++
		}
		lo, hi := int(tp.Partitions)/3, (int(tp.Partitions)+2)/3
		for b := range int32(3) {
			if led[b] < lo || led[b] > hi {
				t.Fatalf("topic %s: partitions led per broker %v, want each %d to %d", tp.Name, led, lo, hi)
			}
		}
	}
}
