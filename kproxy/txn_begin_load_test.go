package kproxy_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestBatchAtomicBeginBoundedAfterCoordinatorLoading: the transaction
// coordinator first answers InitProducerID with COORDINATOR_LOAD_IN_PROGRESS
// (loading its transaction log after a restart) for longer than kgo retries
// it, then with CONCURRENT_TRANSACTIONS (still ending the id's last
// transaction). The atomic batch is answered by its deadline — 503, not
// written — as when the coordinator answers CONCURRENT_TRANSACTIONS from
// the start; not held in kgo's own load of the producer id, which has no
// deadline, for as long as the coordinator answers so.
func TestBatchAtomicBeginBoundedAfterCoordinatorLoading(t *testing.T) {
	c, p := txnProxy(t, 5000)

	// kgo retries a coordinator error 20 times (about 3 s with kproxy's
	// backoff), then gives up on that load: the first 30 are answered
	// COORDINATOR_LOAD_IN_PROGRESS, every later one CONCURRENT_TRANSACTIONS.
	var asked atomic.Int32
	gaveUp := make(chan time.Duration, 1)
	start := time.Now()
	busy := answerInitProducerID(c, func(n int32) int16 {
		asked.Store(n)
		if n <= 30 {
			return kerr.CoordinatorLoadInProgress.Code
		}
		select {
		case gaveUp <- time.Since(start):
		default:
		}
		return kerr.ConcurrentTransactions.Code
	})
	defer busy()

	recs, _ := failureBatch(t, "loading-")
	answered := make(chan batchAnswer, 1)
	go func() { answered <- p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, recs)) }()
	// produce_timeout_ms for the records, as long again for a commit, and
	// answerGrace: 10.25 s at most; 12 s leaves room for a loaded machine.
	select {
	case a := <-answered:
		if a.code != 503 {
			t.Errorf("atomic batch while its transaction cannot begin: %v, want 503 (not written)", a)
		}
	case <-time.After(12 * time.Second):
		busy()
		a := <-answered
		var switched string
		select {
		case d := <-gaveUp:
			switched = "CONCURRENT_TRANSACTIONS from " + d.Round(time.Millisecond).String()
		default:
			switched = "never CONCURRENT_TRANSACTIONS"
		}
		t.Fatalf("atomic batch not answered within 12 s of its arrival (produce_timeout_ms 5000) while InitProducerID "+
			"was answered COORDINATOR_LOAD_IN_PROGRESS, then CONCURRENT_TRANSACTIONS (%d requests, %s); answered %v after %v, "+
			"once the coordinator answered", asked.Load(), switched, a, time.Since(start).Round(time.Millisecond))
	}
	busy()
	next, _ := failureBatch(t, "next-")
	if a := p.postBatch(t, "topic="+topic+"&acks=-1&atomic=1", "", mpBatch(t, next)); a.code != 200 {
		t.Fatalf("atomic batch once the coordinator answers: %v", a)
	}
	got := byValue(t, c, topic)
	for _, r := range recs {
		if got[string(r.value)] != nil {
			t.Errorf("record %q of the batch answered 503 visible", r.value)
		}
	}
}
