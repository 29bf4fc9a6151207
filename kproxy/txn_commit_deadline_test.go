package kproxy_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kafka-http-wrapper/kafka-http-wrapper/kproxy/kproxypb"
	"github.com/kafka-http-wrapper/kafka-http-wrapper/lib/kafkatest"
)

// TestAtomicCommitEndsByTheDeadline: an atomic /batch whose records took
// most of produce_timeout_ms (2 s: the produce request held 1.5 s) and
// whose commit the coordinator then holds 1.9 s. README: the client gets
// its answer by produce_timeout_ms, 250 ms later at most; 504 when the
// commit got no definite answer. Before, the commit had a produce_timeout_ms
// of its own: 200 after 3.4 s (and 504 after 2 × produce_timeout_ms when
// held longer).
func TestAtomicCommitEndsByTheDeadline(t *testing.T) {
	c, p := txnProxy(t, 2000)
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, "first")}})); a.code != 200 {
		t.Fatalf("first atomic batch: %v", a)
	}
	var held atomic.Bool
	c.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if req.(*kmsg.EndTxnRequest).Commit && held.CompareAndSwap(false, true) {
			c.SleepControl(func() { time.Sleep(1900 * time.Millisecond) })
		}
		return nil, nil, false
	})
	// A batch may fail before its commit (kfake now and then answers a
	// produce request of the transaction after a commit
	// OUT_OF_ORDER_SEQUENCE_NUMBER under load: 502, not written): sent
	// again, its produce request held anew, until one reaches its commit.
	var a batchAnswer
	var took time.Duration
	for try := 0; ; try++ {
		if try == 5 {
			t.Fatal("5 atomic batches failed before their commit: the commit was never held")
		}
		kafkatest.NewFaults(t, c).Sleep(int16(kmsg.Produce), 1, 1500*time.Millisecond)
		start := time.Now()
		a = p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, "second")}}))
		took = time.Since(start)
		t.Logf("answer %d after %v (produce_timeout_ms 2000): %s", a.code, took.Round(time.Millisecond), a.raw)
		if held.Load() {
			break
		}
		if (a.code != 502 && a.code != 503) || !strings.Contains(a.raw, "no record of the batch was written") {
			t.Fatalf("atomic batch failed before its commit: %d %s, want 502 or 503, not written", a.code, a.raw)
		}
	}
	if took > 2250*time.Millisecond+200*time.Millisecond {
		t.Errorf("atomic batch answered %d after %v, produce_timeout_ms 2 s: the client gets its answer by then, 250 ms later at most",
			a.code, took.Round(time.Millisecond))
	}
	if a.code != 504 {
		t.Errorf("answer %d for a commit Kafka had not answered by the deadline, want 504 (may have been written)", a.code)
	}
	// The client heals (aborted, or replaced and its id fenced): the next
	// atomic batch commits.
	for end := time.Now().Add(15 * time.Second); ; {
		a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, "third")}}))
		if a.code == 200 {
			break
		}
		if a.code != 503 || time.Now().After(end) {
			t.Fatalf("atomic batch after the late commit: %d %s", a.code, a.raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestGRPCAtomicCommitNotSentAfterTheCallDeadline: an atomic Produce call
// with a 2 s deadline (produce_timeout_ms 10 s) whose commit the
// coordinator holds 2.1 s and then answers COORDINATOR_LOAD_IN_PROGRESS
// (retriable). README (gRPC Deadlines): an atomic call's transaction is
// sent by the call's deadline; a commit sent just before it may be applied
// after it. Before, the commit had produce_timeout_ms of its own: Kafka's
// client sent it again 110 ms after the call's deadline, and it committed.
func TestGRPCAtomicCommitNotSentAfterTheCallDeadline(t *testing.T) {
	c, g := txnGRPC(t, 10, 10000)
	acks := int32(-1)
	ctx0, cancel0 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel0()
	if _, err := g.kp.Produce(ctx0, &kproxypb.ProduceRequest{Acks: &acks, Atomic: true, Topic: topic,
		Records: []*kproxypb.Record{grec("", "k", "first")}}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var commits []time.Time
	c.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit {
			return nil, nil, false
		}
		mu.Lock()
		commits = append(commits, time.Now())
		first := len(commits) == 1
		mu.Unlock()
		if !first {
			return nil, nil, false
		}
		c.SleepControl(func() { time.Sleep(2100 * time.Millisecond) })
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.CoordinatorLoadInProgress.Code
		return resp, nil, true
	})
	start := time.Now()
	deadline := start.Add(2 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	_, err := g.kp.Produce(ctx, &kproxypb.ProduceRequest{Acks: &acks, Atomic: true, Topic: topic,
		Records: []*kproxypb.Record{grec("", "k", "second")}})
	t.Logf("call answered after %v: %v", time.Since(start).Round(time.Millisecond), err)
	time.Sleep(3 * time.Second) // a commit sent again would be by now
	mu.Lock()
	defer mu.Unlock()
	if len(commits) == 0 {
		t.Fatal("no commit sent")
	}
	for i, at := range commits {
		t.Logf("commit %d sent %v after the call began (deadline 2 s)", i+1, at.Sub(start).Round(time.Millisecond))
		if at.After(deadline) {
			t.Errorf("commit %d of the call sent %v after the call's deadline", i+1, at.Sub(deadline).Round(time.Millisecond))
		}
	}
}
