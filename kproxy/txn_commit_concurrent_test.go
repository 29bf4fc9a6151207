package kproxy_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestAtomicCommitConcurrentTransactionsMayHaveBeenWritten: the
// connection carrying an atomic batch's commit (EndTxn) breaks before the
// answer comes; Kafka's client sends the commit again, and the
// coordinator answers CONCURRENT_TRANSACTIONS until the deadline — as
// Kafka does to a commit sent again while the first one's markers are
// being written (PrepareCommit): the transaction then completes, every
// record of the batch visible. kgo gives up with that error, which it
// calls not retriable, and the batch was answered 503, "no record of the
// batch was written": a client sending it again wrote it twice. It may
// have been written: 504.
func TestAtomicCommitConcurrentTransactionsMayHaveBeenWritten(t *testing.T) {
	c, p := txnProxy(t, 2000)
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, "first")}})); a.code != 200 {
		t.Fatalf("first atomic batch: %v", a)
	}
	var commits atomic.Int32
	var over atomic.Bool
	c.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !req.(*kmsg.EndTxnRequest).Commit || over.Load() {
			return nil, nil, false
		}
		if commits.Add(1) == 1 {
			return nil, errors.New("fault: connection closed"), true // sent; its answer lost
		}
		resp := req.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.ConcurrentTransactions.Code
		return resp, nil, true
	})
	a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, "second")}}))
	over.Store(true)
	t.Logf("answer %d after %d commit attempts: %s", a.code, commits.Load(), a.raw)
	if commits.Load() < 2 {
		t.Fatalf("the commit was sent %d times, want it sent again after its connection broke", commits.Load())
	}
	if a.code != 504 {
		t.Errorf("answer %d to a commit sent, then answered CONCURRENT_TRANSACTIONS (the first one completing), want 504 (may have been written)", a.code)
	}
	// The client heals (aborted, or replaced and its id fenced): the next
	// atomic batch commits.
	for end := time.Now().Add(15 * time.Second); ; {
		a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, []brec{{key: "k", value: mp(t, "third")}}))
		if a.code == 200 {
			break
		}
		if a.code != 503 || time.Now().After(end) {
			t.Fatalf("atomic batch after the commit: %d %s", a.code, a.raw)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
