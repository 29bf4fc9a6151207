package kproxy_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// startShortDeadlineOutage starts a proxy with gRPC and the spool
// (spool_after_ms 1 s, produce_timeout_ms 5 s) on a one-partition topic,
// writes a record so that the topic is known, and stops Kafka.
func startShortDeadlineOutage(t *testing.T) (*kafkatest.Restartable, *gproxy) {
	t.Helper()
	k := kafkatest.StartRestartable(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, k.Cluster(), func(cfg *kproxy.Config) {
		cfg.BrokerHosts = []string{k.Addr()}
		cfg.Kafka.DialTimeoutMs = 200
		cfg.SpoolDir = t.TempDir()
		cfg.SpoolAfterMs = 1000
		cfg.ProduceTimeoutMs = 5000
	})
	warmUp(t, g.proxy, "acks=1&topic="+topic+"&key=w", keySeqValue(t, "w", 0))
	k.Stop()
	return k, g
}

// produceShort sends one record in a Produce call whose deadline (600 ms)
// ends before spool_after_ms, and returns its refusal (code OK: written or
// spooled).
func produceShort(g *gproxy, key, value string) refusal {
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	_, err := g.kp.Produce(ctx, &kproxypb.ProduceRequest{Acks: acksOf(1),
		Records: []*kproxypb.Record{grec(topic, key, value)}})
	return refusalOf(err)
}

// waitHeld polls until Kafka's client holds a record.
func waitHeld(t *testing.T, g *gproxy) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); kproxy.BufferedRecords(g.srv) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no record reached Kafka's client")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSpoolShortDeadlineHeadLeavesNeighbourSpooled attacks the spool's
// promise (README, Spool) that a record Kafka does not take within
// spool_after_ms is spooled and answered 202, for a record queued in its
// partition behind another client's record whose deadline ends before
// spool_after_ms. Kafka's client fails a partition's whole queue when the
// context of its first record ends: were that record's context its own
// deadline, the neighbour would be failed with it (503 at 0.4 s) instead
// of spooled at 1 s.
func TestSpoolShortDeadlineHeadLeavesNeighbourSpooled(t *testing.T) {
	_, g := startShortDeadlineOutage(t)
	short := make(chan refusal, 1)
	go func() { short <- produceShort(g, "s", "short") }()
	waitHeld(t, g) // the short call's record is first in the partition
	start := time.Now()
	a := g.post(t, "acks=1&topic="+topic+"&key=b", keySeqValue(t, "b", 0))
	t.Logf("/commit behind the short call's record: %d %q after %v; short call: %v", a.code, a.body, time.Since(start), <-short)
	if a.code != 202 {
		t.Errorf("a spoolable record queued behind a short-deadline record answered %d, want 202 (spooled after spool_after_ms)", a.code)
	}
}

// TestSpoolSteadyShortDeadlineTrafficLetsTopicSpool attacks the same
// promise under steady traffic: while Kafka is away, one client sends a
// record with a 600 ms deadline every 100 ms, and another /commits records
// that may wait produce_timeout_ms (5 s). There is always a short-deadline
// record at the head of the partition; every /commit record must still be
// spooled (202), and no short record answered Unavailable (not written)
// may reach Kafka once it is back.
func TestSpoolSteadyShortDeadlineTrafficLetsTopicSpool(t *testing.T) {
	k, g := startShortDeadlineOutage(t)
	var mu sync.Mutex
	shortCodes := map[codes.Code]int{}
	notWritten := map[string]bool{} // short records answered Unavailable
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := string(keySeqValue(t, "s", n))
				r := produceShort(g, "s", v)
				mu.Lock()
				defer mu.Unlock()
				shortCodes[r.code]++
				if r.code == codes.Unavailable {
					notWritten[v] = true
				}
			}()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	waitHeld(t, g) // a short record leads the partition from the start
	const long = 12
	longCodes := map[int]int{}
	var lw sync.WaitGroup
	for i := range long {
		lw.Add(1)
		go func() {
			defer lw.Done()
			a := g.post(t, "acks=1&topic="+topic+"&key=b", keySeqValue(t, "b", i))
			mu.Lock()
			longCodes[a.code]++
			mu.Unlock()
		}()
		time.Sleep(300 * time.Millisecond) // the pace of the traffic, not a wait
	}
	lw.Wait()
	close(stop)
	wg.Wait()
	t.Logf("during the outage: /commit answers %v, short calls %v; kproxy_spooled_total %d",
		longCodes, shortCodes, metricInt(t, g.proxy, "kproxy_spooled_total"))
	if longCodes[202] != long {
		t.Errorf("spoolable /commit records answered %v, want %d × 202", longCodes, long)
	}

	k.Restart()
	spoolEmpty(t, g.proxy)
	for _, rec := range kafkatest.ReadAll(t, k.Cluster(), kafkaconf.Default(), topic) {
		if notWritten[string(rec.Value)] {
			t.Errorf("short record %q, answered Unavailable (not written), is in Kafka at offset %d", rec.Value, rec.Offset)
		}
	}
}
