package kproxy

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fnv1aPartition must place keys as sarama's default hash partitioner did
// (FNV-1a 32, int32 modulo, absolute value), which is how the 2015 suite
// routed. (murmur2 is checked against the Java client over HTTP.)
func TestFnv1aPartition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		key := make([]byte, 1+rng.IntN(40))
		for j := range key {
			key[j] = byte(rng.IntN(256))
		}
		n := int32(1 + rng.IntN(64))
		h := fnv.New32a()
		h.Write(key)
		want := int32(h.Sum32()) % n
		if want < 0 {
			want = -want
		}
		if got := fnv1aPartition(key, n); got != want {
			t.Fatalf("key % x n=%d: %d, want %d", key, n, got, want)
		}
	}
}

func TestProduceStatus(t *testing.T) {
	never, answered, lost := sendTrace{}, sendTrace{wrote: true}, sendTrace{wrote: true, lost: true}
	out := sendTrace{wrote: true, out: true} // its request still out (or its end not counted yet)
	for _, tc := range []struct {
		err   error
		trace sendTrace
		want  int
	}{
		{kerr.InvalidRecord, lost, 504}, // an answer lost before the refusal
		{context.DeadlineExceeded, lost, 504},
		{context.DeadlineExceeded, answered, 503}, // every attempt refused
		{context.DeadlineExceeded, out, 504},      // failed while its request was out
		{kgo.ErrRecordTimeout, out, 504},
		{context.DeadlineExceeded, never, 503},
		{kgo.ErrRecordTimeout, answered, 503},
		{kgo.ErrClientClosed, never, 503},
		{kerr.InvalidRecord, answered, 400},
		// Refusals of the record itself come only in the answer to its
		// own request: definite, whatever other requests are out (a
		// batch's records go to several brokers at once).
		{kerr.InvalidRecord, out, 400},
		{kerr.CorruptMessage, out, 400},
		{kerr.MessageTooLarge, out, 413},
		// Errors a metadata answer can bring too fail records whose
		// request is out (TestMetadataErrorWhileRequestOutIs504).
		{kerr.UnknownServerError, out, 504},
		{kerr.TopicAuthorizationFailed, out, 504},
		{fmt.Errorf("%w (uncompressed_bytes=10)", kerr.MessageTooLarge), answered, 413},
		{kerr.MessageTooLarge, never, 413},
		{kerr.TopicAuthorizationFailed, answered, 403},
		{kerr.UnknownTopicOrPartition, never, 404},
		{kerr.NotLeaderForPartition, answered, 503},
		{kerr.UnknownServerError, answered, 502},
		{errors.New("something new"), answered, 504},
		{errors.New("dial tcp: connection refused"), never, 503},
	} {
		code, reason := produceStatus(tc.err, tc.trace)
		if code != tc.want {
			t.Errorf("%v %+v: %d %q, want %d", tc.err, tc.trace, code, reason, tc.want)
		}
	}
}
