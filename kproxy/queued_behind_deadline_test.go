package kproxy_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestRecordFailedWithAnEarlierOneSaysSo attacks the one-line reason of a
// record Kafka's client failed together with an earlier record of its
// partition whose produce_timeout_ms passed (the client fails every record
// queued behind it, whatever time they have left). The broker answers
// NOT_LEADER_OR_FOLLOWER throughout; produce_timeout_ms is 1500; a first
// record arrives at 0 ms, a second (through /commit, or /batch) 700 ms
// later: both are failed at 1500 ms, the second 800 ms into its 1500. It
// was answered "kafka did not take the record within produce_timeout_ms",
// which it had not waited. It is 503 (not written) either way.
func TestRecordFailedWithAnEarlierOneSaysSo(t *testing.T) {
	for _, path := range []string{"commit", "batch"} {
		t.Run(path, func(t *testing.T) {
			c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
			p := startProxy(t, c, func(cfg *kproxy.Config) { cfg.ProduceTimeoutMs = 1500 })
			if a := p.post(t, "topic="+topic+"&key=w", mp(t, "warm")); a.code != 200 {
				t.Fatalf("warm-up: %v", a)
			}
			f := kafkatest.NewFaults(t, c)
			f.Outage(6) // until the test ends
			start := time.Now()
			first := make(chan int, 1)
			body := mp(t, "first")
			go func() {
				code, _ := postRaw(p.url+"/commit?topic="+topic+"&key=a", body)
				first <- code
			}()
			waitFor(t, "the first record refused once by the broker", func() bool { return f.Injected() >= 1 })
			time.Sleep(time.Until(start.Add(700 * time.Millisecond)))
			sent := time.Now()
			var code int
			var reason string
			if path == "commit" {
				a := p.post(t, "topic="+topic+"&key=b", mp(t, "second"))
				code, reason = a.code, a.body
			} else {
				a := p.postBatch(t, "topic="+topic, "", mpBatch(t, []brec{{key: "b", value: mp(t, "second")}}))
				code, reason = a.code, a.Error
			}
			took := time.Since(sent)
			if c := <-first; c != 503 {
				t.Fatalf("first record: %d, want 503 at its produce_timeout_ms", c)
			}
			if took > 1200*time.Millisecond {
				t.Fatalf("the second record waited %v (%d %q): not failed with the first at 1.5 s; does Kafka's client no longer fail a partition's queued records together?",
					took.Round(time.Millisecond), code, reason)
			}
			if code != 503 || !strings.Contains(reason, "earlier record of its partition") || !strings.Contains(reason, "not written") {
				t.Errorf("second record, failed with the first %v into its produce_timeout_ms of 1.5 s: %d %q; want 503 naming the earlier record",
					took.Round(time.Millisecond), code, reason)
			}
		})
	}
}
