package kproxy_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestCompactedTopicOutageSpoolsPromptly: with the spool, records of a
// compacted topic kproxy knows are spooled after spool_after_ms while no
// broker answers (the brokers hold every request), keyed or not. What
// kproxy read of the topic's cleanup.policy being old is no reason to hold
// a keyless record for produce_timeout_ms asking brokers that do not
// answer.
func TestCompactedTopicOutageSpoolsPromptly(t *testing.T) {
	kproxy.SetCompactedRecheck(t, 100*time.Millisecond)
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	setTopicConfig(t, c, topic, "cleanup.policy", "compact")
	p := spoolProxy(t, c, nil)
	warmUp(t, p, "acks=1&topic="+topic+"&key=a", keySeqValue(t, "a", 0))
	f := kafkatest.NewFaults(t, c)
	for _, key := range []kmsg.Key{kmsg.Produce, kmsg.Metadata, kmsg.DescribeConfigs} {
		f.Sleep(int16(key), 1000, 2*time.Second)
	}
	time.Sleep(200 * time.Millisecond) // what kproxy read is older than the recheck interval

	var wg sync.WaitGroup
	for _, q := range []string{"acks=1&topic=" + topic, "acks=1&topic=" + topic + "&key=a"} {
		wg.Go(func() {
			start := time.Now()
			a := p.post(t, q, keySeqValue(t, "x"+q, 1))
			took := time.Since(start)
			t.Logf("%s: %d %q after %v", q, a.code, strings.TrimSpace(a.body), took)
			if a.code != 202 {
				t.Errorf("%s without kafka: %d %q, want 202 spooled", q, a.code, a.body)
			}
			if took > 1500*time.Millisecond {
				t.Errorf("%s without kafka answered after %v: spool_after_ms is 200 ms", q, took)
			}
		})
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
}
