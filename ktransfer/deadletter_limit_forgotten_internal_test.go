package ktransfer

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestDeadLetterClientNotMadeWhileTheLimitIsForgotten: a write found the
// dead-letter topic's max.message.bytes known, then waited for the topic's
// lock while another write's UNKNOWN_TOPIC_ID retired the topic's client
// and forgot the limit. The write must not make the new client then: the
// client fixes a partition's batch bound when it first meets it, and kgo's
// default (1,000,012 bytes) would bound every dead letter of the topic for
// the client's life, a larger one written without its value.
func TestDeadLetterClientNotMadeWhileTheLimitIsForgotten(t *testing.T) {
	tr, _, _ := deadLetterTransfer(t, 0)
	tr.deadLetterMax = map[string]int32{"dlq": 4 << 20} // as the brokers told: 4 MiB
	solo := tr.deadLetterSoloLock("dlq")
	cl, err := tr.deadLetterClient("dlq")
	if err != nil {
		t.Fatal(err)
	}
	if !tr.retireDeadLetterClient("dlq", cl, solo, nil, nil, "retired") {
		t.Fatal("the client was not retired")
	}
	cl, err = tr.deadLetterClient("dlq") // the write that waited for the lock
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = cl.ProduceSync(ctx, &kgo.Record{Topic: "dlq", Value: make([]byte, 2<<20)}).FirstErr()
		t.Fatalf("a dead-letter client made while the topic's max.message.bytes was forgotten; a 2 MiB dead letter to a topic taking 4 MiB: %v", err)
	}
	if !errors.Is(err, errDeadLetterLimitForgotten) {
		t.Fatalf("deadLetterClient: %v, want errDeadLetterLimitForgotten", err)
	}
}

// TestDeadLetterLimitAskedBeforeARetireIsNotStored: a write asks the
// dead-letter topic's max.message.bytes; before the answer comes, another
// write's UNKNOWN_TOPIC_ID retires the topic's client (the topic was
// created again, with another limit). The answer, perhaps the old
// topic's, must not be stored: the next client would bound its batches by
// it for its life. The limit is asked again.
func TestDeadLetterLimitAskedBeforeARetireIsNotStored(t *testing.T) {
	tr, k, _ := deadLetterTransfer(t, 0)
	log := tr.log
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now, err := tr.topicMaxBytes(ctx, "dlq") // the topic as it is
	if err != nil {
		t.Fatal(err)
	}
	const old = 100_000 // the topic's limit before it was created again
	solo := tr.deadLetterSoloLock("dlq")
	var asked atomic.Int32
	k.ControlKey(int16(kmsg.DescribeConfigs), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		if asked.Add(1) > 1 {
			return nil, nil, false
		}
		k.SleepControl(func() {
			// Another write stored the old limit, wrote, and got
			// UNKNOWN_TOPIC_ID.
			tr.deadLetterMaxMu.Lock()
			tr.deadLetterMax = map[string]int32{"dlq": old}
			tr.deadLetterMaxMu.Unlock()
			cl, err := tr.deadLetterClient("dlq")
			if err != nil {
				t.Error(err)
				return
			}
			tr.retireDeadLetterClient("dlq", cl, solo, nil, nil, "retired")
		})
		q := req.(*kmsg.DescribeConfigsRequest)
		resp := q.ResponseKind().(*kmsg.DescribeConfigsResponse)
		r := kmsg.NewDescribeConfigsResponseResource()
		r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, "dlq"
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value = "max.message.bytes", kmsg.StringPtr("100000")
		r.Configs = append(r.Configs, c)
		resp.Resources = append(resp.Resources, r)
		return resp, nil, true
	})
	if known, ok := tr.deadLetterLimit(ctx, "dlq", log); !known || !ok {
		t.Fatalf("deadLetterLimit: known %v, ok %v", known, ok)
	}
	if got := tr.deadLetterBatchMax("dlq"); got != now {
		t.Errorf("batch bound %d after a retire during the question (%d asks), want the topic's limit now, %d (%d: asked before the retire)", got, asked.Load(), now, old)
	}
}

// deadLetterTransfer is a Transfer over a Kafka cluster with topic dlq
// whose dead letters are written there (its Kafka options set, its
// dead-letter clients closed at cleanup), ZooKeeper's timeout zkTimeoutMs.
func deadLetterTransfer(t *testing.T, zkTimeoutMs int) (*Transfer, *kfake.Cluster, kafkaconf.Config) {
	t.Helper()
	kc := kafkaconf.Default()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "dlq", Partitions: 1}})
	opts, err := kc.Opts("ktransfer", k.ListenAddrs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cl := kafkatest.Client(t, k, kc)
	tr := &Transfer{cfg: Config{ZKTimeoutMs: zkTimeoutMs}, base: time.Now(), client: cl, adm: kadm.NewClient(cl),
		kafkaOpts: opts, log: slog.New(slog.DiscardHandler)}
	t.Cleanup(tr.closeDeadLetterClients)
	return tr, k, kc
}
