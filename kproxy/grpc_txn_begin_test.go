package kproxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
)

// TestGRPCCancelledAtomicCallWhileBeginning: an atomic Produce whose
// transaction cannot begin yet (the coordinator answers InitProducerID
// with CONCURRENT_TRANSACTIONS) stops when its client cancels it: nothing
// was sent, so nothing needs waiting for. Its handler returning frees the
// call's place among grpc_max_concurrent_streams (1 here): a later call on
// the connection is served at once, not after produce_timeout_ms (5 s).
func TestGRPCCancelledAtomicCallWhileBeginning(t *testing.T) {
	c, g := txnGRPC(t, 1, 5000)
	asked := make(chan struct{}, 1)
	defer answerInitProducerID(c, func(int32) int16 {
		select {
		case asked <- struct{}{}:
		default:
		}
		return kerr.ConcurrentTransactions.Code
	})()

	cancelledAtomicCallFreesItsPlace(t, g, asked, "no InitProducerID from the transactional client",
		"while its transaction was beginning")
}

// TestGRPCCancelledAtomicCallWhileReplacingItsClient: an atomic Produce
// whose transactional client cannot begin (its producer id refused for
// good) has the client replaced and its id fenced; the coordinator answers
// the fence CONCURRENT_TRANSACTIONS. Nothing of the batch was sent: a
// cancelled call stops waiting, its handler returns and frees its place
// among grpc_max_concurrent_streams (1 here) at once, not after
// produce_timeout_ms (5 s) of fencing.
func TestGRPCCancelledAtomicCallWhileReplacingItsClient(t *testing.T) {
	c, g := txnGRPC(t, 1, 5000)
	fencing := make(chan struct{}, 1)
	defer answerInitProducerID(c, func(n int32) int16 {
		switch n {
		case 1, 2:
			return 0 // the fence of the id before its first client (txnPool.begin)
		case 3:
			return kerr.InvalidTransactionTimeout.Code // the client's: refused for good
		}
		select {
		case fencing <- struct{}{}:
		default:
		}
		return kerr.ConcurrentTransactions.Code
	})()

	cancelledAtomicCallFreesItsPlace(t, g, fencing, "no InitProducerID fencing the transactional id",
		"while its client was replaced")
}

// cancelledAtomicCallFreesItsPlace starts an atomic Produce on g, cancels
// it once reached fires (noReach fails the test when it does not within
// 10 s), and fails unless the call ends Canceled and a call after it is
// served within 2 s: the cancelled call's handler gave back its place
// among grpc_max_concurrent_streams. when says at what point it was
// cancelled.
func cancelledAtomicCallFreesItsPlace(t *testing.T, g *gproxy, reached <-chan struct{}, noReach, when string) {
	t.Helper()
	actx, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	acks := int32(-1)
	aDone := make(chan error, 1)
	go func() {
		_, err := g.kp.Produce(actx, &kproxypb.ProduceRequest{Acks: &acks, Atomic: true, Topic: topic,
			Records: []*kproxypb.Record{grec("", "k", "v")}})
		aDone <- err
	}()
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal(noReach)
	}
	cancelA()
	if err := <-aDone; status.Code(err) != codes.Canceled {
		t.Fatalf("the cancelled call: %v, want Canceled", err)
	}

	start := time.Now()
	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer ccancel()
	_, err := grpc_health_v1.NewHealthClient(g.conn).Check(cctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil {
		t.Errorf("a call after an atomic call cancelled %s: %v after %v "+
			"(the cancelled call's handler still held its place)", when, err, time.Since(start).Round(time.Millisecond))
	}
}
