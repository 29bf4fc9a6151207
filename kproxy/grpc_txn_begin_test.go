package kproxy_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestGRPCCancelledAtomicCallWhileBeginning: an atomic Produce whose
// transaction cannot begin yet (the coordinator answers InitProducerID
// with CONCURRENT_TRANSACTIONS) stops when its client cancels it: nothing
// was sent, so nothing needs waiting for. Its handler returning frees the
// call's place among grpc_max_concurrent_streams (1 here): a later call on
// the connection is served at once, not after produce_timeout_ms (5 s).
func TestGRPCCancelledAtomicCallWhileBeginning(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.GRPCMaxConcurrentStreams = 1
		cfg.TransactionalProducers = 1
		cfg.ProduceTimeoutMs = 5000
	})
	var busy atomic.Bool
	busy.Store(true)
	asked := make(chan struct{}, 1)
	c.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		init := req.(*kmsg.InitProducerIDRequest)
		if init.TransactionalID == nil || !busy.Load() {
			return nil, nil, false
		}
		select {
		case asked <- struct{}{}:
		default:
		}
		resp := init.ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ErrorCode = kerr.ConcurrentTransactions.Code
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		return resp, nil, true
	})
	defer busy.Store(false)

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
	case <-asked: // the call's transaction is beginning
	case <-time.After(10 * time.Second):
		t.Fatal("no InitProducerID from the transactional client")
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
		t.Errorf("a call after an atomic call cancelled while its transaction was beginning: %v after %v "+
			"(the cancelled call's handler still held its place)", err, time.Since(start).Round(time.Millisecond))
	}
}

// TestGRPCCancelledAtomicCallWhileReplacingItsClient: an atomic Produce
// whose transactional client cannot begin (its producer id refused for
// good) has the client replaced and its id fenced; the coordinator answers
// the fence CONCURRENT_TRANSACTIONS. Nothing of the batch was sent: a
// cancelled call stops waiting, its handler returns and frees its place
// among grpc_max_concurrent_streams (1 here) at once, not after
// produce_timeout_ms (5 s) of fencing.
func TestGRPCCancelledAtomicCallWhileReplacingItsClient(t *testing.T) {
	c := kafkatest.Start(t, []kafkatest.Topic{{Name: topic, Partitions: 1}})
	g := startGRPC(t, c, func(cfg *kproxy.Config) {
		cfg.GRPCMaxConcurrentStreams = 1
		cfg.TransactionalProducers = 1
		cfg.ProduceTimeoutMs = 5000
	})
	var busy atomic.Bool
	busy.Store(true)
	var inits atomic.Int32
	fencing := make(chan struct{}, 1)
	c.ControlKey(int16(kmsg.InitProducerID), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		init := req.(*kmsg.InitProducerIDRequest)
		if init.TransactionalID == nil || !busy.Load() {
			return nil, nil, false
		}
		resp := init.ResponseKind().(*kmsg.InitProducerIDResponse)
		resp.ProducerID, resp.ProducerEpoch = -1, -1
		if inits.Add(1) == 1 {
			resp.ErrorCode = kerr.InvalidTransactionTimeout.Code // the client's: refused for good
			return resp, nil, true
		}
		select {
		case fencing <- struct{}{}:
		default:
		}
		resp.ErrorCode = kerr.ConcurrentTransactions.Code
		return resp, nil, true
	})
	defer busy.Store(false)

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
	case <-fencing: // the client is being replaced
	case <-time.After(10 * time.Second):
		t.Fatal("no InitProducerID fencing the transactional id")
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
		t.Errorf("a call after an atomic call cancelled while its client was replaced: %v after %v "+
			"(the cancelled call's handler still held its place)", err, time.Since(start).Round(time.Millisecond))
	}
}
