package kproxy_test

import (
	"testing"
	"time"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCShutdownSlowReaderGetsItsAnswers: at shutdown a ProduceStream
// whose client stopped reading its answers is cut once they waited
// max(1 s, write_timeout_ms). A client that reads them, one every 400 ms,
// is not such a client: each answer goes out well within that bound, and
// its requests' records are in Kafka. Every answer of the stream must
// reach it, 200 in order, however long they take together.
func TestGRPCShutdownSlowReaderGetsItsAnswers(t *testing.T) {
	c := kafkatest.StartBrokers(t, 3, []kafkatest.Topic{{Name: topic, Partitions: 3}})
	const shutdownTimeout = 20 * time.Second
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.ShutdownTimeoutMs = int(shutdownTimeout / time.Millisecond)
		cfg.WriteTimeoutMs = 100 // answers given up after 1 s without a read
	}, smallWindows()...)

	// Each answer carries 2000 results (about 20 KB): the client's
	// window holds 3 of the 12.
	const perReq, reqs = 2000, 12
	s := sendAllWritten(t, g, c, reqs, perReq)

	stopped := stopInBackground(g)
	var got []*kproxypb.ProduceResponse
	var end error
	for {
		time.Sleep(400 * time.Millisecond) // a slow reader
		r, err := s.Recv()
		if err != nil {
			end = err
			break
		}
		got = append(got, r)
	}
	if len(got) != reqs {
		t.Errorf("%d answers read, then %v; want the %d of the requests written (%d records in Kafka)",
			len(got), end, reqs, endOffsets(t, c, topic))
	}
	checkInOrder(t, got)
	waitStopped(t, stopped, shutdownTimeout+5*time.Second)
}
