package ktransfer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/ktransfer"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestReplayGivingUpEndsItsHungPush: a replay's dead-letter topic has two
// partitions on two brokers; broker 0 refuses every fetch (partition 0 is
// never read), and the one dead letter of partition 1 is pushed to a
// backend that never answers (read_timeout_ms 0). The replay gives up on
// partition 0 after replayStall: it must then end, with its error, within
// shutdown_timeout_ms and the push abandoned (its connection closed), as
// an interrupted replay does. Before, it waited for the hung push for ever.
func TestReplayGivingUpEndsItsHungPush(t *testing.T) {
	defer ktransfer.SetReplayQuiet(300 * time.Millisecond)()
	defer ktransfer.SetReplayStall(time.Second)()
	e := newClusterEnv(t, kafkatest.Topic{Name: "t", Partitions: 1}, kafkatest.Topic{Name: "dlq", Partitions: 2})
	url, arrived, closed := hangingBackend(t)
	m := module("m", "t", url)
	m.DeadLetterTopic = "dlq"
	m.Protocol.ReadTimeoutMs = 0
	cl := kafkatest.Client(t, e.kafka, e.kc, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	d0, d1 := deadLetterOf("m", "t", 0, "never read"), deadLetterOf("m", "t", 1, "hangs")
	d0.Partition, d1.Partition = 0, 1
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, d0, d1).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e.refuseFetchesAtBroker0(t, "dlq", 2)
	cfg := e.config(t, 0, m)
	cfg.ShutdownTimeoutMs = 300
	rctx, rcancel := context.WithTimeout(context.Background(), 25*time.Second) // the test's own bound
	defer rcancel()
	start := time.Now()
	returned := make(chan error, 1)
	go func() {
		_, err := ktransfer.Replay(rctx, cfg, "m", time.Time{}, testLog(t))
		returned <- err
	}()
	select {
	case <-arrived:
	case <-time.After(15 * time.Second):
		t.Fatal("partition 1's dead letter was not pushed")
	}
	select {
	case err := <-returned:
		if err == nil || !strings.Contains(err.Error(), "partition 0: dead letters from offset 0 below the end 1 not read") {
			t.Fatalf("replay error %v; want one naming partition 0, unfinished", err)
		}
		t.Logf("replay returned after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(10 * time.Second):
		t.Fatal("the replay gave up on partition 0 (stall 1 s) but had not returned 10 s later: it waits for its hung push")
	}
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("the replay returned, its abandoned push's connection still open 3 s later")
	}
}
