package ktransfer

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

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
	kc := kafkaconf.Default()
	k := kafkatest.Start(t, []kafkatest.Topic{{Name: "dlq", Partitions: 1}})
	opts, err := kc.Opts("ktransfer", k.ListenAddrs(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &Transfer{kafkaOpts: opts, log: slog.New(slog.DiscardHandler)}
	t.Cleanup(tr.closeDeadLetterClients)
	tr.deadLetterMax = map[string]int32{"dlq": 4 << 20} // as the brokers told: 4 MiB
	solo := tr.deadLetterSoloLock("dlq")
	cl, err := tr.deadLetterClient("dlq")
	if err != nil {
		t.Fatal(err)
	}
	if !tr.retireDeadLetterClient("dlq", cl, solo, nil, nil) {
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
