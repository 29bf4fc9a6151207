package kproxy

import (
	"math/rand/v2"
	"testing"

	"github.com/IBM/sarama"
)

// The writer computes partitions itself; they must be the ones sarama's
// partitioners choose, which the 2015 suite (fnv1a) and the Java client
// (murmur2) use.
func TestPartitionersMatchSarama(t *testing.T) {
	w := &writer{murmur2: sarama.NewMurmur2Partitioner("")}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 5000 {
		key := make([]byte, 1+rng.IntN(40))
		for j := range key {
			key[j] = byte(rng.IntN(256))
		}
		n := int32(1 + rng.IntN(64))
		msg := &sarama.ProducerMessage{Key: sarama.ByteEncoder(key)}
		want, _ := sarama.NewHashPartitioner("t").Partition(msg, n)
		if got := fnv1aPartition(key, n); got != want {
			t.Fatalf("fnv1a key % x n=%d: %d, sarama %d", key, n, got, want)
		}
		wantM, _ := sarama.NewMurmur2Partitioner("t").Partition(msg, n)
		p := &pending{msg: *msg, key: key}
		if got, _ := w.murmur2.Partition(&p.msg, n); got != wantM {
			t.Fatalf("case %d murmur2: %d, sarama %d", i, got, wantM)
		}
	}
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{sarama.ErrNotLeaderForPartition, true}, {sarama.ErrLeaderNotAvailable, true},
		{sarama.ErrRequestTimedOut, true}, {sarama.ErrNotEnoughReplicas, true}, {sarama.ErrNotConnected, true},
		{sarama.ErrMessageSizeTooLarge, false}, {sarama.ErrInvalidRecord, false},
		{sarama.ErrTopicAuthorizationFailed, false}, {sarama.ErrUnknown, false},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestProduceVersion(t *testing.T) {
	for v, want := range map[sarama.KafkaVersion]int16{
		sarama.V0_11_0_0: 3, sarama.V1_0_0_0: 5, sarama.V2_1_0_0: 7, sarama.V2_8_0_0: 9, sarama.V3_7_0_0: 10, sarama.V4_0_0_0: 10,
	} {
		if got := produceVersion(v); got != want {
			t.Errorf("%s: produce v%d, want v%d", v, got, want)
		}
	}
}
