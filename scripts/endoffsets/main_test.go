package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkaconf"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// The sum of the end offsets, and each partition's with -v, in partition
// order, from a cluster of three brokers; an unknown topic is an error;
// -delete deletes the topic once counted.
func TestEndOffsets(t *testing.T) {
	k := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: "t", Partitions: 3}})
	cl := kafkatest.Client(t, k, kafkaconf.Default(), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	var recs []*kgo.Record
	for p, n := range []int{5, 0, 12} {
		for range n {
			recs = append(recs, &kgo.Record{Topic: "t", Partition: int32(p), Value: []byte("x")})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	brokers := k.ListenAddrs()[1:2] // one seed: the others are found
	var out bytes.Buffer
	if err := run(&out, brokers, "t", false, false); err != nil || out.String() != "17\n" {
		t.Errorf("sum: %q, %v", out.String(), err)
	}
	out.Reset()
	if err := run(&out, brokers, "t", true, false); err != nil || out.String() != "t/0 5\nt/1 0\nt/2 12\n17\n" {
		t.Errorf("-v: %q, %v", out.String(), err)
	}
	if err := run(&out, brokers, "nosuch", false, false); err == nil || !strings.Contains(err.Error(), `topic "nosuch"`) {
		t.Errorf("unknown topic: %v", err)
	}
	out.Reset()
	if err := run(&out, brokers, "t", false, true); err != nil || out.String() != "17\n" {
		t.Errorf("-delete: %q, %v", out.String(), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for run(&out, brokers, "t", false, false) == nil {
		if time.Now().After(deadline) {
			t.Fatal("topic t still listed 10 s after -delete")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
